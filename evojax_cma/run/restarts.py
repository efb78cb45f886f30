r"""IPOP and BIPOP restarts of CMA-ES inside one ``jit``, every vmapped run on its own schedule.

References:
  A. Auger, N. Hansen. A restart CMA evolution strategy with increasing population size.
  CEC 2005 (IPOP-CMA-ES).
  N. Hansen. Benchmarking a BI-population CMA-ES on the BBOB-2009 function testbed.
  GECCO 2009 workshops (BIPOP-CMA-ES).
  N. Hansen et al. pycma 4.5, ``cma.fmin2(..., restarts=, incpopsize=, bipop=)``, whose
  schedule is reproduced here (`plan_next_run`).

Schedule (pycma's ``fmin``). A run ends when any termination criterion fires. The whole
optimisation ends on ``ftarget``, on ``maxfevals`` (counted over all runs), or when more
than ``restarts`` runs with a *large* population have ended. Otherwise the next run starts
from a new ``x0`` (fixed, or drawn by a function of a key) with

* IPOP: :math:`\lambda_k = \lambda_0 \cdot \text{incpopsize}^k` for the ``k``-th restart;
* BIPOP: the first run counts as *small*. While the evaluations spent in small runs are
  below ``bipop`` times those spent in large runs, the next run is small: step size
  :math:`\sigma_0 \cdot 10^{-2 U_1}`, :math:`\lambda = \lfloor\lambda_0 \cdot
  (\text{incpopsize}^{k})^{U_2^2}\rfloor` with ``k`` the number of large runs so far, and
  ``maxiter`` at most half the large-run evaluations divided by λ; else the next run is
  large (IPOP's λ for the next ``k``, σ0) and ``k`` grows.

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

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from evojax_cma.core import termination
from evojax_cma.core.encoding import Encoding
from evojax_cma.core.noise import NoiseOptions
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import (
    check_int,
    check_options,
    check_positive_scalar,
    check_vector,
    is_concrete,
)
from evojax_cma.run.problem import (
    generation,
    init_aux,
    initial_genotype,
    make_setup,
    phenotypes,
    setup_stop_defaults,
)
from evojax_cma.strategies.cma_es import cma_es, default_popsize


class RestartConfig(NamedTuple):
    """Static settings of the restart schedule (pycma's ``fmin2`` argument names)."""

    popsize: int  # λ0
    restarts: int  # maximal number of restarts with a large population
    incpopsize: float
    bipop: float  # 0: IPOP; else the small/large budget ratio (True = 1)
    max_popsize: int


def restart_config(
    num_dims: int,
    popsize: int | None = None,
    restarts: int = 9,
    incpopsize: float = 2,
    bipop: bool | float = False,
    max_popsize: int | None = None,
) -> RestartConfig:
    """Check the schedule's settings and fix ``max_popsize`` (default ``λ0 incpopsize^restarts``).

    Raises:
      TypeError, ValueError: for a ``restarts < 0``, ``incpopsize < 1``, a negative
        ``bipop`` or ``max_popsize < popsize``, before anything is traced.
    """
    lam0 = default_popsize(num_dims) if popsize is None else check_int("popsize", popsize, 2)
    restarts = check_int("restarts", restarts, 0)
    if isinstance(incpopsize, bool) or not isinstance(incpopsize, int | float):
        raise TypeError(f"incpopsize must be a number, got {incpopsize!r}")
    if not incpopsize >= 1:
        raise ValueError(f"incpopsize must be >= 1, got {incpopsize}")
    if not isinstance(bipop, bool | int | float) or not float(bipop) >= 0:
        raise ValueError(f"bipop must be a bool or a number >= 0, got {bipop!r}")
    if max_popsize is None:
        max_popsize = int(lam0 * incpopsize**restarts)
    max_popsize = check_int("max_popsize", max_popsize, lam0)
    return RestartConfig(lam0, restarts, float(incpopsize), float(bipop), max_popsize)


class Schedule(NamedTuple):
    """Where a run is in the restart schedule (a pytree of scalars; vmappable)."""

    runs: Array  # runs started so far
    small_runs: Array  # of them, BIPOP small runs
    small_evals: Array  # evaluations of finished small runs (BIPOP counts run 0 as small)
    large_evals: Array  # evaluations of finished large runs
    small: Array  # whether the current run is small
    popsize: Array  # λ of the current run
    evals_before: Array  # evaluations of all finished runs


def first_run(config: RestartConfig) -> Schedule:
    """The schedule during the first run (λ0; counted as small by BIPOP)."""
    i0, f0 = jnp.asarray(0, jnp.int32), jnp.asarray(0.0)
    return Schedule(
        runs=jnp.asarray(1, jnp.int32),
        small_runs=i0,
        small_evals=f0,
        large_evals=f0,
        small=jnp.asarray(True),
        popsize=jnp.asarray(config.popsize, jnp.int32),
        evals_before=i0,
    )


def plan_next_run(
    config: RestartConfig, schedule: Schedule, run_evals: Array, key: Array
) -> tuple[Schedule, Array, Array, Array]:
    """Account for a finished run of `run_evals` evaluations and plan the next one.

    Pure and jittable (the host driver calls it too). Returns ``(schedule, sigma_factor,
    maxiter_cap, exhausted)``: the next run uses ``schedule.popsize``, ``sigma0 *
    sigma_factor`` and at most `maxiter_cap` iterations; `exhausted` says that no run
    follows (``restarts`` large runs done, or λ would exceed ``max_popsize``).
    """
    run_evals = jnp.asarray(run_evals).astype(schedule.small_evals.dtype)
    small_evals = schedule.small_evals + jnp.where(schedule.small, run_evals, 0.0)
    large_evals = schedule.large_evals + jnp.where(schedule.small, 0.0, run_evals)
    runs = schedule.runs  # index of the next run (pycma's irun after the increment)
    exhausted = runs - schedule.small_runs > config.restarts
    if config.bipop > 0:
        small = small_evals < config.bipop * jnp.maximum(1.0, large_evals)
    else:
        small = jnp.asarray(False)
    small_runs = schedule.small_runs + small.astype(jnp.int32)
    u1, u2 = jax.random.uniform(key, (2,))
    multiplier = config.incpopsize ** (runs - small_runs).astype(u1.dtype)
    lam_large = jnp.floor(config.popsize * multiplier + 1e-9)
    lam_small = jnp.floor(config.popsize * multiplier ** (u2**2) + 1e-9)
    lam = jnp.where(small, lam_small, lam_large)
    exhausted = exhausted | (lam > config.max_popsize)
    lam = jnp.minimum(lam, config.max_popsize).astype(jnp.int32)
    sigma_factor = jnp.where(small, 0.01**u1, 1.0)
    maxiter_cap = jnp.where(small, 0.5 * large_evals / lam, jnp.inf)
    schedule = Schedule(
        runs=runs + 1,
        small_runs=small_runs,
        small_evals=small_evals,
        large_evals=large_evals,
        small=small,
        popsize=lam,
        evals_before=schedule.evals_before + run_evals.astype(jnp.int32),
    )
    return schedule, sigma_factor, maxiter_cap, exhausted


def run_stop_options(
    num_dims: int,
    popsize: Array,
    overrides: dict[str, Any],
    evals_before: Array,
    maxiter_cap: Array,
) -> termination.StopOptions:
    """Termination thresholds of one run.

    Pycma's defaults for its λ, the user's overrides, ``maxfevals`` counted over all runs
    and ``maxiter`` capped for BIPOP's small runs.
    """
    opts = termination.make_stop_options(num_dims, popsize, **overrides)
    return opts._replace(
        maxfevals=opts.maxfevals - evals_before.astype(opts.maxfevals.dtype),
        maxiter=jnp.minimum(opts.maxiter, maxiter_cap),
    )


ENDS_ALL = ("ftarget", "maxfevals")
"""Criteria that end the whole optimisation rather than one run."""


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


@partial(jax.jit, static_argnames=("strategy", "fn", "batched", "x0_fn", "config", "setup"))
def _minimize_restarts(strategy, fn, batched, x0_fn, config, setup, key, x0, sigma0, overrides):
    n = strategy.num_dims
    end_all = jnp.asarray([name in ENDS_ALL for name in termination.STOP_NAMES])

    def start(key, schedule, sigma_factor, maxiter_cap):
        k_x0, k_init = jax.random.split(key)
        start_x = x0 if x0_fn is None else initial_genotype(setup, x0_fn(k_x0))
        params = strategy.default_params(schedule.popsize)
        state = strategy.init(k_init, jnp.asarray(start_x, dtype), sigma0 * sigma_factor, params)
        opts = run_stop_options(n, schedule.popsize, overrides, schedule.evals_before, maxiter_cap)
        return state, opts, init_aux(setup, n, config.popsize, dtype)

    dtype = jnp.result_type(float) if x0_fn is not None else termination.start_point(x0).dtype
    key, k_start = jax.random.split(key)
    schedule = first_run(config)
    state, opts, aux = start(k_start, schedule, 1.0, jnp.inf)
    flags = jnp.zeros(len(termination.STOP_NAMES), bool)
    best = (phenotypes(setup, state.mean)[1], jnp.asarray(jnp.inf, dtype))
    carry = (key, state, opts, aux, schedule, best, flags, jnp.asarray(False))

    def cond(carry):
        return ~carry[-1]

    def body(carry):
        key, state, opts, aux, schedule, best, _, done = carry
        key, k_ask, k_plan, k_start = jax.random.split(key, 4)
        state, aux, best = generation(strategy, fn, batched, setup, k_ask, state, aux, best, ~done)
        flags = strategy.stop(state, opts)

        def restart(args):
            state, opts, aux, schedule = args
            schedule, factor, maxiter_cap, exhausted = plan_next_run(
                config, schedule, state.evals, k_plan
            )
            new_state, new_opts, new_aux = start(k_start, schedule, factor, maxiter_cap)
            return new_state, new_opts, new_aux, schedule, exhausted

        def keep(args):
            return (*args, jnp.asarray(False))

        run_over = jnp.any(flags)
        ends_all = jnp.any(flags & end_all)
        restarted = lax.cond(run_over & ~ends_all, restart, keep, (state, opts, aux, schedule))
        done = ends_all | restarted[-1]
        # A finished optimisation keeps its last run's state, options and schedule.
        state, opts, aux, schedule = jax.tree.map(
            lambda old, new: jnp.where(done, old, new),
            (state, opts, aux, schedule),
            restarted[:-1],
        )
        return key, state, opts, aux, schedule, best, flags, done

    _, state, _, _, schedule, best, flags, _ = lax.while_loop(cond, body, carry)
    return RestartResult(
        best_x=best[0],
        best_f=best[1],
        evals=schedule.evals_before + state.evals,
        runs=schedule.runs,
        small_runs=schedule.small_runs,
        popsize=schedule.popsize,
        state=state,
        stop_flags=flags,
    )


def uniform_x0(lower: Any, upper: Any) -> Callable[[Array], Array]:
    """An ``x0`` for `minimize_restarts`: each run starts uniformly at random in the box.

    Args:
      lower: vector ``(n,)`` of lower bounds.
      upper: vector ``(n,)`` of upper bounds, ``> lower``.
    """
    lower, upper = jnp.asarray(lower, float), jnp.asarray(upper, float)
    if lower.ndim != 1 or lower.shape != upper.shape:
        raise ValueError(
            f"lower and upper must be vectors of one shape, got {lower.shape} and {upper.shape}"
        )
    if not bool(jnp.all(lower < upper)):
        raise ValueError("lower must be < upper in every coordinate")

    def draw(key: Array) -> Array:
        """A uniform point of the box."""
        return jax.random.uniform(key, lower.shape, lower.dtype, lower, upper)

    return draw


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
    encoding: Encoding | None = None,
    constraints: Callable[[Array], Array] | None = None,
    noise_handling: bool | NoiseOptions = False,
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
      encoding: an `evojax_cma.Encoding`; see `evojax_cma.minimize`. `x0` (and what an
        `x0` function returns) is a phenotype.
      constraints: ``g(x) <= 0``; see `evojax_cma.minimize` (fresh coefficients every
        run).
      noise_handling: see `evojax_cma.minimize` (a fresh noise level every run).
      keyed: whether `fn` takes a PRNG key; see `evojax_cma.minimize`.

    Returns:
      A `RestartResult`.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    x0_fn = x0 if callable(x0) else None
    if x0_fn is not None:
        n = int(jax.eval_shape(x0_fn, jax.random.key(0)).shape[0])
        if num_dims is not None and check_int("num_dims", num_dims, 1) != n:
            raise ValueError(f"x0(key) has shape ({n},), but num_dims={num_dims}")
        x0 = jnp.zeros(n)  # unused
    else:
        shape = np.shape(x0)  # type: ignore[arg-type]
        if len(shape) != 1:
            raise ValueError(f"x0 must be a vector or a function of a key, got shape {shape}")
        n = int(shape[0])
        check_vector("x0", x0, n)
    check_positive_scalar("sigma0", sigma0)
    options = dict(options or {})
    check_options("termination option(s)", options, frozenset(termination.STOP_NAMES))
    for name, value in options.items():
        if is_concrete(value) and np.any(np.isnan(np.asarray(value, float))):
            raise ValueError(f"option {name} must not be NaN, got {value}")
    config = restart_config(n, popsize, restarts, incpopsize, bipop, max_popsize)
    strategy: Strategy = cma_es(
        n, config.popsize, max_popsize=config.max_popsize, preset=preset, active=active
    )
    setup = make_setup(
        n,
        bounds,
        bound_handler,
        encoding,
        constraints=constraints,
        noise_handling=noise_handling,
        keyed=keyed,
        batched=batched,
        x0=None if x0_fn is not None else x0,
    )
    options = setup_stop_defaults(setup, options)
    overrides = {k: jnp.asarray(v) for k, v in options.items()}
    if x0_fn is None:
        x0 = initial_genotype(setup, x0)
    return _minimize_restarts(
        strategy, fn, batched, x0_fn, config, setup, key, x0, sigma0, overrides
    )


__all__ = [
    "RestartConfig",
    "RestartResult",
    "Schedule",
    "first_run",
    "minimize_restarts",
    "plan_next_run",
    "restart_config",
    "uniform_x0",
]
