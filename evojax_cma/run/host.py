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
from evojax_cma.core.validation import (
    check_options,
    check_positive_scalar,
)
from evojax_cma.run import step
from evojax_cma.run.arguments import build_pipeline, check_x0_function, initial_genotype
from evojax_cma.run.host_arguments import (
    as_x0,
    check_seed,
    check_strategy_options,
    int_option,
    restart_x0,
)
from evojax_cma.run.host_evaluation import (
    EvaluationError,
    constraint_values,
    count_host_constraints,
    evaluate_on_host,
)
from evojax_cma.run.host_resume import (
    DISPLAY_SETTINGS,
    FminCheckpoint,
    FminError,
    FminResult,
    RunCheckpoint,
    check_resume,
    fmin_error,
    fmin_result,
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
    resume: FminCheckpoint | None = None,
) -> tuple[np.ndarray, FminResult]:
    """Minimise a host (NumPy) function with CMA-ES, like ``cma.fmin2(fn, x0, sigma0)``.

    Args:
      fn: objective; takes a point ``(n,)`` and returns a real scalar, or with
        ``batched=True`` takes ``(popsize, n)`` and returns ``(popsize,)``.
      x0: initial mean (real numbers; strings are not parsed), or a function of a PRNG
        key returning one (called for every run, as `evojax_cma.minimize_restarts`
        does; `evojax_cma.uniform_x0` fits both).
      sigma0: initial step size.
      options: pycma-style options: ``popsize``, ``seed`` (an int, default 0),
        ``verbose`` (an int, default 1; 0 is silent), ``verb_disp`` (an int: print every
        that many iterations, default 100; 0: no iteration rows), ``preset``,
        ``CMA_active``, ``bounds`` (``[lower, upper]``), ``BoundaryHandler``
        (``"transform"``, the default, or ``"penalty"``; see `evojax_cma.minimize`), and
        the termination criteria (``ftarget``, ``maxfevals``, ``maxiter``, ``tolfun``,
        ...; see `STOP_NAMES`).
      restarts: number of IPOP/BIPOP restarts, pycma's schedule
        (`evojax_cma.run.schedule`); ``ftarget`` and ``maxfevals`` (over all runs) end
        everything. Each population size is compiled once per process.
      bipop: BIPOP instead of IPOP (True, or the small/large budget ratio).
      incpopsize: factor of λ between large runs.
      batched: whether `fn` evaluates a whole population at once.
      executor: evaluate points through ``executor.map`` (ignored if batched).
      strategy: a strategy to use instead of ``cma_es`` built from `options` (no
        restarts; the options ``popsize``, ``preset`` and ``CMA_active`` configure the
        built-in CMA-ES and conflict with it, except a ``popsize`` equal to its own).
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
      resume: the ``resume`` of an `FminError`: continue from before the generation that
        failed, with the same settings (only ``verbose``, ``verb_disp``, `fn`,
        `constraints`' function, `batched`, `executor`, and `x0` of the same dimension,
        used by later restarts, may change). With a deterministic `fn`, the run ends as
        one that never failed.

    Returns:
      ``(xbest, result)`` as ``cma.fmin2`` returns ``(xbest, es)``.

    Raises:
      FminError: `fn` or `constraints` raised on a candidate, the executor broke (a
        worker died), or an `x0` function failed at a restart. The message names the
        candidate (row and point, where known), the generation and the run;
        ``__cause__`` is the original exception; ``.result`` is the `FminResult` so far
        and ``.resume`` continues (see `evojax_cma.run.host_resume`). A value of the
        wrong type or shape is an `FminTypeError` or `FminValueError`, which are also
        `TypeError` and `ValueError`.
      TypeError, ValueError: invalid arguments or options (named in the message),
        before anything runs; a `resume` with other settings.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not isinstance(options, dict | None):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
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
            dtype=dtype,
            resume=resume,
        )


def _fmin(fn, x0, sigma0, options, *, restarts, bipop, incpopsize, batched, executor, **kw):
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    check_options("fmin option(s)", options, FMIN_OPTIONS | set(STOP_NAMES))
    names = ("strategy", "params", "constraints", "resume")
    strategy, params, constraints, resume = (kw[name] for name in names)
    key = jax.random.key(check_seed(options.get("seed", 0)))
    verbose = int_option(options, "verbose", 1, None)
    verb_disp = int_option(options, "verb_disp", 100, 0)
    if callable(x0):
        check_x0_function(x0)
        draw_x0 = x0
    else:
        draw_x0 = lambda key: x0  # noqa: E731
    key, k_x0 = jax.random.split(key)
    if resume is None:
        x_first = as_x0(draw_x0(k_x0))
        n = x_first.shape[0]
    else:
        check_resume(resume, None)
        n = resume.settings["n"]
        x_first = None if callable(x0) else as_x0(x0, n)
    check_positive_scalar("sigma0", sigma0)
    check_strategy_options(strategy, params, restarts, options, n)
    popsize = options.get("popsize") if strategy is None else strategy.popsize
    config = restart_config(n, popsize, restarts, incpopsize, bipop)
    if resume is not None:
        m = int(resume.settings["num_constraints"])
    elif constraints is None:
        m = 0
    else:
        assert x_first is not None
        m = count_host_constraints(constraints, x_first)
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
    settings = {
        "n": n,
        "dtype": kw["dtype"],
        "sigma0": float(sigma0),
        "options": {k: v for k, v in options.items() if k not in DISPLAY_SETTINGS},
        "restarts": restarts,
        "bipop": bipop,
        "incpopsize": incpopsize,
        "strategy": strategy,
        "params": params,
        "pipeline": pipeline,
        "constraints": constraints is not None,
        "num_constraints": m,
    }
    evaluate = partial(evaluate_on_host, fn, batched=batched, executor=executor)
    host_g = None if constraints is None else partial(constraint_values, constraints, m=m)
    fail = partial(fmin_error, pipeline, constraints is not None)

    if resume is None:
        schedule, factor, maxiter_cap = first_run(config), 1.0, np.inf
        best, history, run, state, start = None, [], None, None, x_first
    else:
        resume = check_resume(resume, settings)
        key, schedule, factor = resume.key, resume.schedule, resume.sigma_factor
        maxiter_cap, best, history = resume.maxiter_cap, resume.best, list(resume.history)
        run, state, start = resume.run, resume.last_state, None
        if verbose > 0:
            print(f"resume run {int(schedule.runs)} after {len(history)} iterations")
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
        if run is None:
            outer = (settings, key, schedule, factor, maxiter_cap)
            before = FminCheckpoint(*outer, best, tuple(history), None, state)
            key, k_run, k_plan, k_x0 = jax.random.split(key, 4)
            if start is None:
                start = restart_x0(draw_x0, k_x0, n, partial(fail, checkpoint=before))
            genotype = initial_genotype(pipeline, start)
            state, tstates = _start(
                run_strategy, pipeline, k_run, genotype, jnp.asarray(sigma0 * float(factor)), params
            )
            if best is None:
                best = step.initial_best(pipeline, state)
            run = RunCheckpoint(k_run, k_plan, state, tstates)
        runner = _Run(run_strategy, pipeline, evaluate, host_g, verbose, verb_disp)
        outer = (settings, key, schedule, factor, maxiter_cap)
        try:
            state, flags, best = runner(run, best, run_opts, history, schedule)
        except _FailedError as failed:
            at = FminCheckpoint(*outer, failed.best, tuple(history), failed.run, failed.run.state)
            error = fail(failed.error, checkpoint=at, generation=failed.generation)
            raise error from failed.error.__cause__
        k_plan, start, run = run.plan_key, None, None
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
    if verbose > 0:
        print(f"termination on {reasons} after {evals} evaluations")
        print(f"best f = {float(best.f):.10e}")
    result = fmin_result(pipeline, constraints is not None, state, best, evals, history, reasons)
    return result.xbest, result._replace(runs=int(schedule.runs))


class _FailedError(Exception):
    """A generation's evaluation failed: the error and the run before that generation."""

    def __init__(self, error: EvaluationError, run: RunCheckpoint, best, generation: int):
        super().__init__(error.message)
        self.error, self.run, self.best, self.generation = error, run, best, generation


class _Run(NamedTuple):
    """One run to its termination, with host evaluations between the jitted pieces."""

    strategy: Strategy
    pipeline: Pipeline
    evaluate: Callable[..., np.ndarray]
    constraints: Callable[[np.ndarray], np.ndarray] | None
    verbose: int
    verb_disp: int

    def __call__(self, run: RunCheckpoint, best, stop_options, history, schedule):
        """Run until a criterion fires; append to `history`; return ``(state, flags, best)``.

        Raises `_FailedError` with the run as it was before a generation whose evaluation
        failed (`history` then holds the rows before it).
        """
        key, state, tstates = run.key, run.state, run.tstates
        t0 = time.perf_counter()
        if self.verbose > 0:
            print("Iterat #Fevals   function value  axis ratio  sigma  min&max std  t[m:s]")
        while True:
            before, best_before = RunCheckpoint(key, run.plan_key, state, tstates), best
            key, k_gen = jax.random.split(key)
            try:
                state, tstates, best, F = self._generation(k_gen, state, tstates, best)
            except EvaluationError as error:
                generation = int(before.state.generation) + 1
                raise _FailedError(error, before, best_before, generation) from error
            flags, shown = _stop_and_display(self.strategy, state, stop_options)
            sigma, ratio, min_std, max_std = (float(v) for v in np.asarray(shown))
            it, evals = int(state.generation), int(schedule.evals_before) + int(state.evals)
            fin = F[np.isfinite(F)]
            fgen = float(fin.min()) if fin.size else float("nan")
            history.append((len(history) + 1, evals, fgen, sigma, ratio))
            done = bool(np.any(flags))
            shown_now = it <= 3 or done or (self.verb_disp > 0 and it % self.verb_disp == 0)
            if self.verbose > 0 and self.verb_disp > 0 and shown_now:
                elapsed = time.perf_counter() - t0
                print(
                    f"{it:6d} {evals:7d} {fgen:+.9e} {ratio:7.1e} {sigma:7.2e} "
                    f"{min_std:6.0e} {max_std:6.0e} {int(elapsed // 60)}:{elapsed % 60:04.1f}"
                )
            if done:
                return state, flags, best

    def _generation(self, k_gen, state, tstates, best):
        """One generation: ``(state, tstates, best, F)``; raises `EvaluationError`."""
        strategy, pipeline = self.strategy, self.pipeline
        dtype = state.mean.dtype
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
        if step.noise_handler_of(pipeline) is not None:
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
        return state, tstates, best, F

    def _reevaluate(self, key, state, population, outs, repeats):
        """The noise handler's re-evaluations on the host (only the rows in use)."""
        dtype = state.mean.dtype
        index, valid, moved = _reevaluation_points(
            self.strategy, self.pipeline, key, state, population, outs
        )
        X2, used = np.asarray(moved), np.asarray(valid)
        F2 = np.zeros(X2.shape[0])
        G2 = None
        try:
            F2[used] = self.evaluate(X2[used], repeats=repeats)
            if self.constraints is not None:
                m = self.pipeline.find(AugmentedLagrangian).num_constraints
                G2 = np.zeros((X2.shape[0], m))
                G2[used] = self.constraints(X2[used])
                G2 = jnp.asarray(G2, dtype)
        except EvaluationError as error:  # name the population row that was re-evaluated
            row = None if error.index is None else int(np.asarray(index)[used][error.index])
            where = "" if row is None else f" (population row {row}, moved slightly)"
            message = f"{error.message}, re-evaluating for noise handling{where}"
            again = EvaluationError(message, kind=error.kind, index=row, point=error.point)
            raise again from error.__cause__
        return jnp.asarray(F2, dtype), G2, index, valid


__all__ = ["FminCheckpoint", "FminError", "FminResult", "fmin"]
