"""A host-side driver in the spirit of ``cma.fmin2``, for NumPy objectives.

Each generation runs the shared step of `evojax_cma.run.step` with the objective on the
host in between: `propose` and `incorporate` (and, with noise handling, the
re-evaluation pieces) are jit-compiled once per strategy, pipeline and shape, at module
level, so a second `fmin` call with equal settings, and every restart of a schedule with
a population size seen before, reuses the compiled code. The objective runs one point
at a time, on a whole population (``batched=True``), or through any
``concurrent.futures.Executor`` (a process pool, a Dask or Ray client).

`fmin` computes in float64 by default, as pycma does, inside ``jax.enable_x64`` for the
duration of the call only: the user's global JAX configuration is left as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from evojax_cma.core.termination import STOP_NAMES, stop_reasons
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import check_options, check_positive_scalar, check_vector
from evojax_cma.run import step
from evojax_cma.run.arguments import build_pipeline, check_x0_function, initial_genotype
from evojax_cma.run.host_evaluation import (
    constraint_values,
    count_host_constraints,
    evaluate_on_host,
)
from evojax_cma.run.schedule import (
    ENDS_ALL,
    first_run,
    plan_next_run,
    restart_config,
    run_stop_options,
)
from evojax_cma.strategies.cma_es import cma_es
from evojax_cma.transforms.base import Pipeline, Transform
from evojax_cma.transforms.constraints import AugmentedLagrangian
from evojax_cma.transforms.noise import NoiseHandler

FMIN_OPTIONS = frozenset(
    {"popsize", "seed", "verbose", "verb_disp", "preset", "CMA_active", "bounds", "BoundaryHandler"}
)
DTYPES = ("float64", "float32")


class FminResult(NamedTuple):
    """Outcome of `fmin`.

    Attributes:
      xbest: best point evaluated (NumPy).
      fbest: its fitness.
      evals: number of evaluations.
      iterations: number of generations.
      stop: names of the termination criteria that fired.
      state: the final strategy state.
      history: one row per generation of all runs: ``(iteration, evals, best f of the
        generation, sigma, axis ratio)``.
      runs: number of runs (1 + restarts).
    """

    xbest: np.ndarray
    fbest: float
    evals: int
    iterations: int
    stop: list[str]
    state: Any
    history: np.ndarray
    runs: int = 1


# The jitted pieces: module level, so their caches outlive a call of fmin.
_static = partial(jax.jit, static_argnames=("strategy", "pipeline"))


@_static
def _start(strategy, pipeline, key, x0, sigma0, params):
    state = strategy.init(key, x0, sigma0, params)
    return state, pipeline.init(strategy.num_dims, strategy.popsize, state.mean.dtype)


@_static
def _propose(strategy, pipeline, key, state):
    population, state, stages = step.propose(strategy, pipeline, key, state)
    return population, state, tuple(stages)


@_static
def _incorporate(strategy, pipeline, state, tstates, population, stages, F, G, best):
    return step.incorporate(
        strategy, pipeline, state, tstates, population, list(stages), F, G, best
    )


@_static
def _reevaluation_points(strategy, pipeline, key, state, population, outs):
    return step.reevaluation_points(strategy, pipeline, key, state, population, outs)


@_static
def _adapt_to_reevaluation(strategy, pipeline, state, tstates, outs, F2, G2, index, valid, reps):
    return step.adapt_to_reevaluation(
        strategy, pipeline, state, tstates, outs, F2, G2, index, valid, reps
    )


@partial(jax.jit, static_argnames=("strategy",))
def _stop_and_display(strategy, state, options):
    """The stop flags and ``(sigma, axis ratio, min std, max std)`` for the display."""
    s = strategy.summary(state)
    stds = s.sigma * jnp.broadcast_to(s.stds, s.mean.shape)
    shown = jnp.stack([s.sigma, jnp.max(s.D) / jnp.min(s.D), jnp.min(stds), jnp.max(stds)])
    return strategy.stop(state, options), shown


_plan_next_run = jax.jit(plan_next_run, static_argnums=0)


def fmin(
    fn: Callable[[np.ndarray], Any],
    x0: Any,
    sigma0: float,
    options: dict[str, Any] | None = None,
    *,
    restarts: int = 0,
    bipop: bool | float = False,
    incpopsize: float = 2,
    batched: bool = False,
    executor: Executor | None = None,
    strategy: Strategy | None = None,
    params: Any = None,
    encoding: Transform | Pipeline | None = None,
    constraints: Callable[[np.ndarray], Any] | None = None,
    noise_handling: bool | NoiseHandler | None = None,
    dtype: str = "float64",
) -> tuple[np.ndarray, FminResult]:
    """Minimise a host (NumPy) function with CMA-ES, like ``cma.fmin2(fn, x0, sigma0)``.

    Args:
      fn: objective; takes a point ``(n,)`` and returns a scalar, or with
        ``batched=True`` takes ``(popsize, n)`` and returns ``(popsize,)``.
      x0: initial mean, or a function of a PRNG key returning one (called for every run,
        as `evojax_cma.minimize_restarts` does; `evojax_cma.uniform_x0` fits both).
      sigma0: initial step size.
      options: pycma-style options: ``popsize``, ``seed`` (default 0), ``verbose``
        (default 1; 0 is silent), ``verb_disp`` (print every that many iterations,
        default 100), ``preset``, ``CMA_active``, ``bounds`` (``[lower, upper]``),
        ``BoundaryHandler`` (``"transform"``, the default, or ``"penalty"``; see
        `evojax_cma.minimize`), and the termination criteria (``ftarget``, ``maxfevals``,
        ``maxiter``, ``tolfun``, ...; see `STOP_NAMES`).
      restarts: number of IPOP/BIPOP restarts, pycma's schedule
        (`evojax_cma.run.schedule`); ``ftarget`` and ``maxfevals`` (over all runs) end
        everything. Each population size is compiled once per process.
      bipop: BIPOP instead of IPOP (True, or the small/large budget ratio).
      incpopsize: factor of λ between large runs.
      batched: whether `fn` evaluates a whole population at once.
      executor: evaluate points through ``executor.map`` (ignored if batched).
      strategy: a strategy to use instead of ``cma_es`` built from `options` (no
        restarts).
      params: hyperparameters for the strategy (no restarts).
      encoding: a transformation from the search space to `fn`'s parameters (see
        `evojax_cma.minimize`); `x0` and the returned ``xbest`` are in `fn`'s parameters.
      constraints: ``g(x) <= 0`` as in ``cma.fmin_con2``: a host function of a point
        returning ``m`` values, handled by pycma's adaptive augmented Lagrangian
        (`evojax_cma.transforms.constraints`). ``xbest`` is then the final mean (pycma's
        ``xfavorite``) and ``fbest`` the best feasible f evaluated (inf if none);
        ``tolstagnation`` defaults to 0.
      noise_handling: True or `evojax_cma.noise_handler` settings, as ``cma.fmin2``'s
        ``noise_handler`` (UH-CMA-ES, `evojax_cma.transforms.noise`); ``tolfacupx``
        defaults to inf.
      dtype: ``"float64"`` (the default, as pycma) or ``"float32"``: the precision of
        the strategy and of the points passed to `fn`, for this call only.

    Returns:
      ``(xbest, result)`` as ``cma.fmin2`` returns ``(xbest, es)``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    with jax.enable_x64(dtype == "float64"):
        return _fmin(
            fn,
            x0,
            sigma0,
            dict(options or {}),
            restarts=restarts,
            bipop=bipop,
            incpopsize=incpopsize,
            batched=batched,
            executor=executor,
            strategy=strategy,
            params=params,
            encoding=encoding,
            constraints=constraints,
            noise_handling=noise_handling,
        )


def _fmin(fn, x0, sigma0, options, *, restarts, bipop, incpopsize, batched, executor, **kw):
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    check_options("fmin option(s)", options, FMIN_OPTIONS | set(STOP_NAMES))
    strategy, params = kw["strategy"], kw["params"]
    key = jax.random.key(_check_seed(options.get("seed", 0)))
    if callable(x0):
        check_x0_function(x0)
        draw_x0 = x0
    else:
        draw_x0 = lambda key: x0  # noqa: E731
    key, k_x0 = jax.random.split(key)
    x_first = np.asarray(draw_x0(k_x0), dtype=np.float64)
    n = _check_x0(x_first)
    check_positive_scalar("sigma0", sigma0)
    if restarts and (strategy is not None or params is not None):
        raise ValueError("restarts build their own CMA-ES: pass neither strategy nor params")
    if strategy is not None and strategy.num_dims != n:
        raise ValueError(
            f"x0 has {n} coordinates but the strategy has num_dims={strategy.num_dims}"
        )
    config = restart_config(n, options.get("popsize"), restarts, incpopsize, bipop)
    verbose = int(options.get("verbose", 1))
    verb_disp = int(options.get("verb_disp", 100))
    constraints = kw["constraints"]
    m = 0 if constraints is None else count_host_constraints(constraints, x_first)
    bounds = options.get("bounds")
    pipeline = build_pipeline(
        n,
        bounds=None if bounds is None else tuple(bounds),
        bound_handler=options.get("BoundaryHandler", "transform"),
        encoding=kw["encoding"],
        noise_handling=kw["noise_handling"],
        num_constraints=m,
    )
    stop_opts = pipeline.stop_defaults({k: options[k] for k in STOP_NAMES if k in options})
    evaluate = partial(evaluate_on_host, fn, batched=batched, executor=executor)
    host_g = None if constraints is None else partial(constraint_values, constraints, m=m)

    schedule, factor, maxiter_cap = first_run(config), 1.0, np.inf
    best: step.Best | None = None
    history: list[tuple] = []
    start = x_first
    while True:
        run_strategy = strategy or cma_es(
            n,
            int(schedule.popsize),
            preset=options.get("preset", "pycma"),
            active=options.get("CMA_active", True),
        )
        pipeline.check_strategy(run_strategy)
        run_opts = run_stop_options(
            n, schedule.popsize, stop_opts, schedule.evals_before, jnp.asarray(maxiter_cap)
        )
        key, k_run, k_plan, k_x0 = jax.random.split(key, 4)
        if start is None:
            start = np.asarray(draw_x0(k_x0), dtype=np.float64)
            _check_x0(start, n)
        genotype = initial_genotype(pipeline, start)
        state, tstates = _start(
            run_strategy, pipeline, k_run, genotype, jnp.asarray(sigma0 * float(factor)), params
        )
        if best is None:
            best = step.initial_best(pipeline, state)
        run = _Run(run_strategy, pipeline, evaluate, host_g, verbose, verb_disp)
        state, flags, best = run(k_run, state, tstates, best, run_opts, history, schedule)
        start = None
        reasons = stop_reasons(flags)
        if any(r in ENDS_ALL for r in reasons):
            break
        next_schedule, factor, maxiter_cap, exhausted = _plan_next_run(
            config, schedule, state.evals, k_plan
        )
        if bool(exhausted):
            break
        schedule = next_schedule
        if verbose > 0:
            print(f"restart {int(schedule.runs) - 1} with popsize {int(schedule.popsize)}")
    assert best is not None
    evals = int(schedule.evals_before) + int(state.evals)
    fbest = float(best.f)
    if verbose > 0:
        print(f"termination on {reasons} after {evals} evaluations")
        print(f"best f = {fbest:.10e}")
    if constraints is not None:
        xbest = np.asarray(pipeline.decode(state.mean), dtype=np.float64)
    else:
        xbest = np.asarray(best.x, dtype=np.float64)
    result = FminResult(
        xbest=xbest,
        fbest=fbest,
        evals=evals,
        iterations=len(history),
        stop=reasons,
        state=state,
        history=np.asarray(history),
        runs=int(schedule.runs),
    )
    return xbest, result


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"option seed must be an int, got {type(seed).__name__} {seed!r}")
    return int(seed)


def _check_x0(x0: Any, n: int | None = None) -> int:
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a vector, got shape {x0.shape}")
    check_vector("x0", x0, x0.shape[0] if n is None else n)
    return x0.shape[0]


class _Run(NamedTuple):
    """One run to its termination, with host evaluations between the jitted pieces."""

    strategy: Strategy
    pipeline: Pipeline
    evaluate: Callable[..., np.ndarray]
    constraints: Callable[[np.ndarray], np.ndarray] | None
    verbose: int
    verb_disp: int

    def __call__(self, key, state, tstates, best, stop_options, history, schedule):
        """Run until a criterion fires; append to `history`; return ``(state, flags, best)``."""
        strategy, pipeline = self.strategy, self.pipeline
        dtype = state.mean.dtype
        with_noise = step.noise_handler_of(pipeline) is not None
        t0 = time.perf_counter()
        if self.verbose > 0:
            print("Iterat #Fevals   function value  axis ratio  sigma  min&max std  t[m:s]")
        while True:
            key, k_gen = jax.random.split(key)
            population, state, stages = _propose(strategy, pipeline, k_gen, state)
            X = np.asarray(stages[-1])
            repeats = int(step.repeats_now(pipeline, tstates))
            F = self.evaluate(X, repeats=repeats)
            G = None if self.constraints is None else jnp.asarray(self.constraints(X), dtype)
            state, tstates, outs, best = _incorporate(
                strategy,
                pipeline,
                state,
                tstates,
                population,
                stages,
                jnp.asarray(F, dtype),
                G,
                best,
            )
            if with_noise:
                F2, G2, index, valid = self._reevaluate(
                    jax.random.fold_in(k_gen, 2), state, population, outs, repeats
                )
                state, tstates = _adapt_to_reevaluation(
                    strategy,
                    pipeline,
                    state,
                    tstates,
                    outs,
                    F2,
                    G2,
                    index,
                    valid,
                    jnp.asarray(repeats),
                )
            flags, shown = _stop_and_display(strategy, state, stop_options)
            sigma, ratio, min_std, max_std = (float(v) for v in np.asarray(shown))
            it, evals = int(state.generation), int(schedule.evals_before) + int(state.evals)
            fin = F[np.isfinite(F)]
            fgen = float(fin.min()) if fin.size else float("nan")
            history.append((len(history) + 1, evals, fgen, sigma, ratio))
            done = bool(np.any(flags))
            if self.verbose > 0 and (it <= 3 or it % self.verb_disp == 0 or done):
                elapsed = time.perf_counter() - t0
                print(
                    f"{it:6d} {evals:7d} {fgen:+.9e} {ratio:7.1e} {sigma:7.2e} "
                    f"{min_std:6.0e} {max_std:6.0e} {int(elapsed // 60)}:{elapsed % 60:04.1f}"
                )
            if done:
                return state, flags, best

    def _reevaluate(self, key, state, population, outs, repeats):
        """The noise handler's re-evaluations on the host (only the rows in use)."""
        dtype = state.mean.dtype
        index, valid, moved = _reevaluation_points(
            self.strategy, self.pipeline, key, state, population, outs
        )
        X2, used = np.asarray(moved), np.asarray(valid)
        F2 = np.zeros(X2.shape[0])
        F2[used] = self.evaluate(X2[used], repeats=repeats)
        G2 = None
        if self.constraints is not None:
            G2 = np.zeros((X2.shape[0], self.pipeline.find(AugmentedLagrangian).num_constraints))
            G2[used] = self.constraints(X2[used])
            G2 = jnp.asarray(G2, dtype)
        return jnp.asarray(F2, dtype), G2, index, valid


__all__ = ["FminResult", "fmin"]
