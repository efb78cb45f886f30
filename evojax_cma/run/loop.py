"""The whole optimisation inside one ``jit``: ``lax.while_loop`` over ask, evaluate, tell.

`minimize` works unchanged under ``jax.vmap`` over keys, ``x0``, ``sigma0``, params and
stop options: each run stops on its own criteria and finished runs stay frozen (a
batched ``while_loop`` keeps iterating while any run is active and keeps the carry of the
finished ones). Finished runs are passed ``running=False`` in ``ask`` so that they never
trigger a batch-wide eigendecomposition.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from evojax_cma.core.termination import StopOptions
from evojax_cma.core.types import CHUNKED, Strategy
from evojax_cma.core.validation import check_positive_scalar
from evojax_cma.run.arguments import check_x0_vector, initial_genotype, problem_and_pipeline
from evojax_cma.run.step import chunked_fitness, generation, initial_best
from evojax_cma.transforms.base import Pipeline, Transform
from evojax_cma.transforms.noise import NoiseHandler


class RunResult(NamedTuple):
    """Outcome of `minimize`.

    Attributes:
      state: the final strategy state (``evals``, ...; its ``mean`` and ``best_x`` are
        genotypes, its ``best_f`` the fitness as told, with any bound penalty).
      stop_flags: one boolean per name in `evojax_cma.STOP_NAMES`; see
        `evojax_cma.stop_reasons`.
      best_x: the best evaluated point, as the objective saw it (phenotype, in bounds;
        with constraints, the best feasible one).
      best_f: the objective's value there (inf if none was feasible).
    """

    state: Any
    stop_flags: Array
    best_x: Array
    best_f: Array


@partial(jax.jit, static_argnames=("strategy", "pipeline", "problem", "chunked"))
def _minimize(strategy, pipeline, problem, chunked, key, x0, sigma0, params, options):
    state = strategy.init(key, x0, sigma0, params)
    tstates = pipeline.init(strategy.num_dims, strategy.popsize, state.mean.dtype)
    no_stop = jnp.zeros(len(options), bool)

    def cond(carry):
        return ~jnp.any(carry[2])

    def body(carry):
        key, state, flags, tstates, best = carry
        key, k_gen = jax.random.split(key)
        running = ~jnp.any(flags)
        state, tstates, best = generation(
            strategy, pipeline, problem, k_gen, state, tstates, best, running, chunked
        )
        return key, state, strategy.stop(state, options), tstates, best

    carry = (key, state, no_stop, tstates, initial_best(pipeline, state))
    _, state, flags, _, best = lax.while_loop(cond, body, carry)
    return RunResult(state, flags, best.x, best.f)


def minimize(
    strategy: Strategy,
    fn: Callable[[Array], Array],
    key: Array,
    x0: Any,
    sigma0: Any,
    params: Any = None,
    options: StopOptions | dict[str, Any] | None = None,
    *,
    batched: bool = False,
    chunked: bool = False,
    bounds: Any = None,
    bound_handler: str = "transform",
    encoding: Transform | Pipeline | None = None,
    constraints: Callable[[Array], Array] | None = None,
    noise_handling: bool | NoiseHandler = False,
    keyed: bool = False,
) -> RunResult:
    """Minimise a JAX function with `strategy` until a termination criterion fires.

    Args:
      strategy: e.g. ``evojax_cma.cma_es(n)``.
      fn: a JAX-traceable objective. It maps one point ``(n,)`` to a scalar, or, with
        ``batched=True``, a population ``(popsize, n)`` to ``(popsize,)``. With
        ``keyed=True`` it takes a PRNG key as second argument (a noisy objective; every
        call gets a fresh key).
      key: a PRNG key; the same key gives the same run, jitted or vmapped.
      x0: initial mean, shape ``(n,)``, as the objective sees points (phenotype); it is
        encoded into the search space (and moved into `bounds`, with a warning).
      sigma0: initial step size, > 0.
      params: hyperparameters (defaults: ``strategy.default_params()``).
      options: termination thresholds, as `StopOptions` (vmappable) or a dict of pycma
        names (``ftarget``, ``maxfevals``, ``tolfun``, ...).
      batched: whether `fn` evaluates a whole population at once (with ``chunked``: a
        whole chunk).
      chunked: evaluate and tell chunk by chunk, never forming the population
        (`chunked_fitness` and ``strategy.tell_keyed``; for `evojax_cma.open_es` and
        `evojax_cma.variational`). Same result as unchunked, to rounding.
      bounds: ``(lower, upper)``, scalars or ``(n,)`` vectors (±inf allowed); every
        evaluated point lies in the box. pycma's ``bounds`` option.
      bound_handler: ``"transform"`` (pycma's ``BoundTransform``, the default) or
        ``"penalty"`` (pycma's adaptive ``BoundPenalty``; CMA-family strategies only).
      encoding: a transformation (`evojax_cma.scaling`, `evojax_cma.log_scale`,
        `evojax_cma.chain` of them, or any `evojax_cma.transforms.Transform`) from the
        search space to the objective's parameters, applied before the bounds. Equal
        encodings (built twice with equal settings) do not recompile.
      constraints: inequality constraints ``g(x) <= 0``: a JAX function of a point
        returning ``(m,)`` values (with ``batched``: ``(popsize, n) -> (popsize, m)``),
        handled by pycma's adaptive augmented Lagrangian
        (`evojax_cma.transforms.constraints`); ``tolstagnation`` then defaults to 0 (off), as
        in ``cma.fmin_con2``. The final ``state.mean`` is the solution to use (pycma's
        ``xfavorite``); ``best_x`` is the best feasible point evaluated.
      noise_handling: True or `evojax_cma.noise_handler` settings: UH-CMA-ES
        (`evojax_cma.transforms.noise`, pycma's ``noise_handler``); ``tolfacupx`` then
        defaults to inf, as in pycma. CMA-family strategies only.
      keyed: whether `fn` takes a PRNG key (see `fn`).

    Returns:
      `RunResult` with the final state and the flags of the criteria that fired.

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.cma_es(5)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(5), 1.0,
      ...                   options={"ftarget": 1e-8})
      >>> bool(res.state.best_f <= 1e-8), ec.stop_reasons(res.stop_flags)
      (True, ['ftarget'])
    """
    check_x0_vector(x0, strategy.num_dims, "minimize")
    check_positive_scalar("sigma0", sigma0)
    problem, pipeline = problem_and_pipeline(
        strategy,
        fn,
        x0,
        batched=batched,
        keyed=keyed,
        constraints=constraints,
        bounds=bounds,
        bound_handler=bound_handler,
        encoding=encoding,
        noise_handling=noise_handling,
    )
    if options is None or isinstance(options, dict):
        options = strategy.stop_options(**pipeline.stop_defaults(options or {}))
    elif not isinstance(options, StopOptions):
        raise TypeError(f"options must be a StopOptions or a dict, got {type(options).__name__}")
    if params is None:
        params = strategy.default_params()
    if chunked:
        if CHUNKED not in strategy.capabilities:
            raise ValueError(
                f"chunked=True needs a strategy with chunks; {strategy.name!r} has none"
            )
        if pipeline.stateful or constraints is not None or keyed:
            raise ValueError(
                "chunked=True works without bound_handler='penalty', constraints, "
                "noise_handling and keyed"
            )
    x0 = initial_genotype(pipeline, x0)
    return _minimize(strategy, pipeline, problem, bool(chunked), key, x0, sigma0, params, options)


__all__ = ["RunResult", "chunked_fitness", "minimize"]
