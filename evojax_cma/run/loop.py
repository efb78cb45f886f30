"""The whole optimisation inside one ``jit``: ``lax.while_loop`` over ask, evaluate, tell.

`minimize` works unchanged under ``jax.vmap`` over keys, ``x0``, ``sigma0``, params and
stop options: each run stops on its own criteria and finished runs stay frozen (a
batched ``while_loop`` keeps iterating while any run is active and keeps the carry of the
finished ones). Finished runs are passed ``active=False`` in ``ask`` so that they never
trigger a batch-wide eigendecomposition.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from evojax_cma.core.encoding import Encoding
from evojax_cma.core.noise import NoiseOptions
from evojax_cma.core.termination import StopOptions
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import check_positive_scalar, check_vector
from evojax_cma.run.problem import (
    Setup,
    check_strategy,
    generation,
    init_aux,
    initial_genotype,
    make_setup,
    phenotypes,
    population_fitness,
    setup_stop_defaults,
)


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


def chunked_fitness(
    strategy: Strategy,
    fn: Callable,
    key: Array,
    state: Any,
    *,
    batched: bool = False,
    decode: Callable[[Array], Array] | None = None,
) -> Array:
    """Evaluate the population of ``ask(key, state)`` chunk by chunk (``lax.map``).

    Only ``chunk_size x n`` points exist at a time; pair it with ``strategy.tell_keyed``.
    `decode` maps each chunk's genotypes to the points `fn` sees.
    """
    ask_chunk, chunk_size = strategy.ask_chunk, strategy.chunk_size
    if ask_chunk is None or chunk_size is None:
        raise ValueError(f"strategy {strategy.name!r} has no chunked sampling")

    def one(index):
        points = ask_chunk(key, state, index)
        return population_fitness(fn, batched, points if decode is None else decode(points))

    num_chunks = strategy.popsize // chunk_size
    return lax.map(one, jnp.arange(num_chunks)).reshape(strategy.popsize)


@partial(jax.jit, static_argnames=("strategy", "fn", "batched", "chunked", "setup"))
def _minimize(strategy, fn, batched, chunked, setup, key, x0, sigma0, params, options):
    state = strategy.init(key, x0, sigma0, params)
    check_strategy(setup, state)
    aux = init_aux(setup, strategy.num_dims, strategy.popsize, state.mean.dtype)
    no_stop = jnp.zeros(len(options), bool)
    best = (phenotypes(setup, state.mean)[1], jnp.asarray(jnp.inf, state.mean.dtype))

    def cond(carry):
        return ~jnp.any(carry[2])

    def body(carry):
        key, state, flags, aux, best = carry
        key, k_ask = jax.random.split(key)
        if chunked:
            decode = partial(_decode, setup)
            fitness = chunked_fitness(strategy, fn, k_ask, state, batched=batched, decode=decode)
            state = strategy.tell_keyed(k_ask, state, fitness)
            best_f = jnp.minimum(best[1], jnp.min(jnp.where(jnp.isnan(fitness), jnp.inf, fitness)))
            best = (phenotypes(setup, state.best_x)[1], best_f)
        else:
            active = ~jnp.any(flags)
            state, aux, best = generation(
                strategy, fn, batched, setup, k_ask, state, aux, best, active
            )
        return key, state, strategy.stop(state, options), aux, best

    _, state, flags, _, best = lax.while_loop(cond, body, (key, state, no_stop, aux, best))
    return RunResult(state, flags, best[0], best[1])


def _decode(setup: Setup, genotypes: Array) -> Array:
    return phenotypes(setup, genotypes)[1]


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
    encoding: Encoding | None = None,
    constraints: Callable[[Array], Array] | None = None,
    noise_handling: bool | NoiseOptions = False,
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
      encoding: an `evojax_cma.Encoding` (`evojax_cma.scaling`, `evojax_cma.log_scale`,
        `evojax_cma.chain` of them) from the search space to the objective's parameters,
        applied before the bounds.
      constraints: inequality constraints ``g(x) <= 0``: a JAX function of a point
        returning ``(m,)`` values (with ``batched``: ``(popsize, n) -> (popsize, m)``),
        handled by pycma's adaptive augmented Lagrangian
        (`evojax_cma.core.constraints`); ``tolstagnation`` then defaults to 0 (off), as
        in ``cma.fmin_con2``. The final ``state.mean`` is the solution to use (pycma's
        ``xfavorite``); ``best_x`` is the best feasible point evaluated.
      noise_handling: True or `evojax_cma.noise_handler` settings: UH-CMA-ES
        (`evojax_cma.core.noise`, pycma's ``noise_handler``); ``tolfacupx`` then
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
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    check_vector("x0", x0, strategy.num_dims)
    check_positive_scalar("sigma0", sigma0)
    setup = make_setup(
        strategy.num_dims,
        bounds,
        bound_handler,
        encoding,
        constraints=constraints,
        noise_handling=noise_handling,
        keyed=keyed,
        batched=batched,
        x0=x0,
    )
    if options is None or isinstance(options, dict):
        options = strategy.stop_options(**setup_stop_defaults(setup, options or {}))
    elif not isinstance(options, StopOptions):
        raise TypeError(f"options must be a StopOptions or a dict, got {type(options).__name__}")
    if params is None:
        params = strategy.default_params()
    if chunked:
        if strategy.tell_keyed is None:
            raise ValueError(
                f"chunked=True needs a strategy with chunks; {strategy.name!r} has none"
            )
        if setup.penalized or setup.constraints or setup.noise or setup.keyed:
            raise ValueError(
                "chunked=True works without bound_handler='penalty', constraints, "
                "noise_handling and keyed"
            )
    x0 = initial_genotype(setup, x0)
    return _minimize(strategy, fn, batched, chunked, setup, key, x0, sigma0, params, options)


__all__ = ["RunResult", "chunked_fitness", "minimize"]
