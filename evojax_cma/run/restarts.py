r"""IPOP and BIPOP restarts of CMA-ES inside one ``jit``, every vmapped run on its own schedule.

The schedule itself (pycma's ``fmin2`` logic, shared with the host `evojax_cma.fmin`) is
`evojax_cma.run.schedule`; this module runs it.

Shape-stable growth by masking. λ changes inside ``jit`` and differs between vmapped
runs, but arrays cannot change shape. The strategy is built with ``max_popsize`` =
:math:`\lambda_0\,\text{incpopsize}^{\text{restarts}}` rows (`evojax_cma.cma_es`); a run
with population λ uses the first λ rows and ``tell`` ranks the rest last with weight 0, so
the update is exactly that of a λ-population CMA-ES. The cost: every generation samples,
evaluates and sorts ``max_popsize`` points, whatever λ. For IPOP with ``restarts=9`` the
first runs pay up to 512 times their own work (on an accelerator the extra rows are
mostly free; on CPU they dominate early runs: see ``benchmarks/restarts.py``). Lower
``restarts`` (or pass ``max_popsize``) when that matters; runs that would need more rows
than ``max_popsize`` are not started (the schedule ends as if ``restarts`` were reached).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from evojax_cma.core import progress, termination
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import (
    check_int,
    check_key,
    check_options,
    check_sigma0,
    state_dtype,
)
from evojax_cma.run.arguments import (
    check_x0_function,
    check_x0_vector,
    initial_genotype,
    problem_and_pipeline,
)
from evojax_cma.run.schedule import (
    ENDS_ALL,
    first_run,
    plan_next_run,
    restart_config,
    run_stop_options,
)
from evojax_cma.run.step import generation, initial_best
from evojax_cma.strategies.cma_es import cma_es
from evojax_cma.transforms.base import Pipeline, Transform
from evojax_cma.transforms.noise import NoiseHandler


class RestartResult(NamedTuple):
    """Outcome of `minimize_restarts` (batched like its inputs under ``vmap``).

    Attributes:
      best_x: best evaluated point of all runs (phenotype, in bounds; with constraints,
        the best feasible one).
      best_f: the objective's value there (inf if none was feasible).
      evals: evaluations of all runs.
      runs: number of runs (1 + restarts made).
      small_runs: of them, BIPOP's small-population runs.
      popsize: λ of the last run.
      state: the last run's final strategy state.
      stop_flags: the criteria that ended the last run (`evojax_cma.stop_reasons`).
    """

    best_x: Array
    best_f: Array
    evals: Array
    runs: Array
    small_runs: Array
    popsize: Array
    state: Any
    stop_flags: Array


@partial(jax.jit, static_argnames=("strategy", "pipeline", "problem", "x0_fn", "config"))
def _minimize_restarts(strategy, pipeline, problem, x0_fn, config, key, x0, sigma0, overrides):
    n = strategy.num_dims
    end_all = jnp.asarray([name in ENDS_ALL for name in termination.STOP_NAMES])

    def start(key, schedule, sigma_factor, maxiter_cap):
        k_x0, k_init = jax.random.split(key)
        start_x = x0 if x0_fn is None else initial_genotype(pipeline, x0_fn(k_x0))
        params = strategy.default_params(schedule.popsize)
        state = strategy.init(k_init, jnp.asarray(start_x, dtype), sigma0 * sigma_factor, params)
        opts = run_stop_options(n, schedule.popsize, overrides, schedule.evals_before, maxiter_cap)
        return state, opts, pipeline.init(n, config.popsize, dtype)

    dtype = jnp.result_type(float) if x0_fn is not None else progress.start_point(x0).dtype
    key, k_start = jax.random.split(key)
    schedule = first_run(config)
    state, opts, tstates = start(k_start, schedule, 1.0, jnp.inf)
    flags = strategy.stop(state, opts)  # only invalid_input can be set before a generation
    best = initial_best(pipeline, state)
    carry = (key, state, opts, tstates, schedule, best, flags, jnp.any(flags & end_all))

    def cond(carry):
        return ~carry[-1]

    def body(carry):
        key, state, opts, tstates, schedule, best, _, done = carry
        key, k_ask, k_plan, k_start = jax.random.split(key, 4)
        state, tstates, best, _ = generation(
            strategy, pipeline, problem, k_ask, state, tstates, best, running=~done
        )
        flags = strategy.stop(state, opts)

        def restart(args):
            state, opts, tstates, schedule = args
            schedule, factor, maxiter_cap, exhausted = plan_next_run(
                config, schedule, state.evals, k_plan
            )
            new_state, new_opts, new_aux = start(k_start, schedule, factor, maxiter_cap)
            # a run drawn with invalid input (x0 function returning NaN) ends everything
            invalid = strategy.stop(new_state, new_opts)[-1]
            return new_state, new_opts, new_aux, schedule, exhausted, invalid

        def keep(args):
            return (*args, jnp.asarray(False), jnp.asarray(False))

        run_over = jnp.any(flags)
        ends_all = jnp.any(flags & end_all)
        restarted = lax.cond(run_over & ~ends_all, restart, keep, (state, opts, tstates, schedule))
        invalid_next = restarted[-1]
        flags = flags.at[-1].set(flags[-1] | invalid_next)
        restarted = restarted[:-1]
        done = ends_all | restarted[-1] | invalid_next
        # A finished optimisation keeps its last run's state, options and schedule.
        state, opts, tstates, schedule = jax.tree.map(
            lambda old, new: jnp.where(done, old, new),
            (state, opts, tstates, schedule),
            restarted[:-1],
        )
        return key, state, opts, tstates, schedule, best, flags, done

    _, state, _, _, schedule, best, flags, _ = lax.while_loop(cond, body, carry)
    return RestartResult(
        best_x=best.x,
        best_f=best.f,
        evals=schedule.evals_before + state.evals,
        runs=schedule.runs,
        small_runs=schedule.small_runs,
        popsize=schedule.popsize,
        state=state,
        stop_flags=flags,
    )


@dataclasses.dataclass(frozen=True)
class UniformX0:
    """A uniform draw from the box ``[lower, upper]`` (a value: equal boxes compare equal)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __call__(self, key: Array) -> Array:
        """A uniform point of the box."""
        lower = jnp.asarray(self.lower, jnp.result_type(float))
        return jax.random.uniform(key, lower.shape, lower.dtype, lower, jnp.asarray(self.upper))


def uniform_x0(lower: Any, upper: Any) -> UniformX0:
    """An ``x0`` for every driver: each run starts uniformly at random in the box.

    Equal boxes give equal values, so a new ``uniform_x0`` of the same box does not
    recompile `minimize_restarts`.

    Args:
      lower: vector ``(n,)`` of lower bounds.
      upper: vector ``(n,)`` of upper bounds, ``> lower``.
    """
    lo, hi = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    if lo.ndim != 1 or lo.shape != hi.shape:
        raise ValueError(
            f"lower and upper must be vectors of one shape, got {lo.shape} and {hi.shape}"
        )
    if not bool(np.all(lo < hi)):
        raise ValueError("lower must be < upper in every coordinate")
    return UniformX0(tuple(float(v) for v in lo), tuple(float(v) for v in hi))


def minimize_restarts(
    fn: Callable[[Array], Array],
    key: Array,
    x0: Any,
    sigma0: Any,
    options: dict[str, Any] | None = None,
    *,
    restarts: int = 9,
    bipop: bool | float = False,
    incpopsize: float = 2,
    popsize: int | None = None,
    max_popsize: int | None = None,
    preset: str = "pycma",
    active: bool = True,
    batched: bool = False,
    num_dims: int | None = None,
    bounds: Any = None,
    bound_handler: str = "transform",
    encoding: Transform | Pipeline | None = None,
    constraints: Callable[[Array], Array] | None = None,
    noise_handling: bool | NoiseHandler = False,
    keyed: bool = False,
) -> RestartResult:
    """IPOP- or BIPOP-CMA-ES in one ``jit``, like ``cma.fmin2(fn, x0, sigma0, restarts=9)``.

    Works under ``jax.vmap`` over `key`, `sigma0`, an array `x0` and array-valued
    `options`: each run restarts on its own schedule (the batch loops until all are done).

    Args:
      fn: JAX-traceable objective of one point (or of a population with ``batched``).
      key: PRNG key.
      x0: initial mean ``(n,)`` of every run, or a function ``key -> (n,)`` called for each
        run (`uniform_x0` draws from a box), pycma's recommendation for restarts.
      sigma0: initial step size of every (large) run.
      options: termination options under pycma's names. ``ftarget`` and ``maxfevals`` end
        everything (``maxfevals`` counts all runs); the others end a run; λ-dependent
        defaults (``maxiter``, ``tolstagnation``) follow each run's λ.
      restarts: maximal number of restarts with a large population (pycma's
        ``restarts``; small BIPOP runs do not count).
      bipop: False for IPOP; True (or a budget ratio > 0) for BIPOP.
      incpopsize: factor of λ between large runs.
      popsize: λ0 (default ``4 + floor(3 ln n)``).
      max_popsize: rows of the masked population (default ``λ0 incpopsize^restarts``).
      preset: as for `evojax_cma.cma_es`.
      active: as for `evojax_cma.cma_es`.
      batched: whether `fn` evaluates a whole population.
      num_dims: n; checked against `x0`'s output when `x0` is a function.
      bounds: ``(lower, upper)``; see `evojax_cma.minimize`.
      bound_handler: ``"transform"`` or ``"penalty"``; see `evojax_cma.minimize`.
      encoding: a transformation; see `evojax_cma.minimize`. `x0` (and what an
        `x0` function returns) is a phenotype.
      constraints: ``g(x) <= 0``; see `evojax_cma.minimize` (fresh coefficients every
        run).
      noise_handling: see `evojax_cma.minimize` (a fresh noise level every run).
      keyed: whether `fn` takes a PRNG key; see `evojax_cma.minimize`.

    Returns:
      A `RestartResult`. A run whose input is invalid (a σ0, or an x0 drawn by a function,
      only known inside the user's ``jit``/``vmap``) ends the optimisation with the
      ``invalid_input`` flag, keeping the best point of the runs before it.

    Raises:
      TypeError, ValueError: as `evojax_cma.minimize`, before anything is traced; and
        ``restarts`` whose population ``λ0 incpopsize^restarts`` exceeds ``2**31 - 1``
        numbers (pass ``max_popsize`` or fewer restarts).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    check_key(key)
    x0_fn = x0 if callable(x0) else None
    if x0_fn is not None:
        check_x0_function(x0_fn)
        n = int(jax.eval_shape(x0_fn, jax.random.key(0)).shape[0])
        if num_dims is not None and check_int("num_dims", num_dims, 1) != n:
            raise ValueError(f"x0(key) has shape ({n},), but num_dims={num_dims}")
        x0 = jnp.zeros(n)  # unused
    else:
        shape = np.shape(x0)  # type: ignore[arg-type]
        if len(shape) != 1:
            raise ValueError(f"x0 must be a vector or a function of a key, got shape {shape}")
        n = int(shape[0])
        check_x0_vector(x0, n, "minimize_restarts")
    dtype = np.dtype(jnp.result_type(float)) if x0_fn is not None else state_dtype(x0)
    check_sigma0(sigma0, dtype)
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    options = dict(options or {})
    check_options("termination option(s)", options, frozenset(termination.CRITERIA))
    for name, value in options.items():
        termination.check_stop_option(name, value)
    config = restart_config(n, popsize, restarts, incpopsize, bipop, max_popsize)
    strategy: Strategy = cma_es(
        n, config.popsize, max_popsize=config.max_popsize, preset=preset, active=active
    )
    problem, pipeline = problem_and_pipeline(
        strategy,
        fn,
        None if x0_fn is not None else x0,
        batched=batched,
        keyed=keyed,
        constraints=constraints,
        bounds=bounds,
        bound_handler=bound_handler,
        encoding=encoding,
        noise_handling=noise_handling,
        dtype=dtype,
    )
    options = pipeline.stop_defaults(options)
    overrides = {k: jnp.asarray(v) for k, v in options.items()}
    if x0_fn is None:
        x0 = initial_genotype(pipeline, x0)
    return _minimize_restarts(
        strategy, pipeline, problem, x0_fn, config, key, x0, sigma0, overrides
    )


__all__ = ["RestartResult", "minimize_restarts", "uniform_x0"]
