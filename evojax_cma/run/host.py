"""A host-side driver in the spirit of ``cma.fmin2``, for NumPy objectives.

Each generation runs the shared step of `evojax_cma.run.step` with the objective on the
host in between (`evojax_cma.run.host_run`): ``propose`` and ``incorporate`` (and, with
noise handling, the re-evaluation pieces) are jit-compiled once per strategy, pipeline
and shape, at module level, so a second `fmin` call with equal settings, and every
restart of a schedule with a population size seen before, reuses the compiled code. The
objective runs one point at a time, on a whole population (``batched=True``), or
through any ``concurrent.futures.Executor`` (a process pool, a Dask or Ray client).

`fmin` computes in float64 by default, as pycma does, inside ``jax.enable_x64`` for the
duration of the call only: the user's global JAX configuration is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from evojax_cma.core import prng
from evojax_cma.core.termination import STOP_NAMES, stop_reasons
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import (
    check_int,
    check_options,
    check_positive_scalar,
)
from evojax_cma.history import history_spec, init_history
from evojax_cma.run import host_files, keywords, step
from evojax_cma.run.arguments import build_pipeline, check_x0_function, initial_genotype
from evojax_cma.run.host_arguments import (
    as_x0,
    check_seed,
    check_strategy_options,
    int_option,
    restart_x0,
)
from evojax_cma.run.host_evaluation import (
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
from evojax_cma.run.host_run import GenerationFailedError, HostRun, plan_next, start_run
from evojax_cma.run.host_run import incorporate as _incorporate  # noqa: F401 (tests
from evojax_cma.run.host_run import propose as _propose  # noqa: F401 read their caches)
from evojax_cma.run.keywords import ProblemKeywords, RecordingKeywords, RestartKeywords
from evojax_cma.run.schedule import (
    ENDS_ALL,
    first_run,
    restart_config,
    run_stop_options,
)
from evojax_cma.run.segments import progress_bar
from evojax_cma.strategies.cma_es import cma_es

FMIN_OPTIONS = frozenset(
    {"popsize", "seed", "verbose", "verb_disp", "preset", "CMA_active", "bounds", "BoundaryHandler"}
)
DTYPES = ("float64", "float32")


@keywords.driver(
    problem=keywords.takes(ProblemKeywords, "batched", "constraints", "encoding", "noise_handling"),
    schedule=RestartKeywords,  # restarts=0, pycma's default; minimize_restarts: 9
    recording=keywords.takes(RecordingKeywords, without=("segment",)),  # one generation a step
)
def fmin(
    fn: Callable[[np.ndarray], Any],
    x0: Any,
    sigma0: float,
    options: dict[str, Any] | None = None,
    *,
    executor: Executor | None = None,
    strategy: Strategy | None = None,
    params: Any = None,
    dtype: str = "float64",
    problem: ProblemKeywords,
    schedule: RestartKeywords,
    recording: RecordingKeywords,
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
      executor: evaluate points through ``executor.map`` (ignored if batched).
      strategy: a strategy to use instead of ``cma_es`` built from `options` (no
        restarts; the options ``popsize``, ``preset`` and ``CMA_active`` configure the
        built-in CMA-ES and conflict with it, except a ``popsize`` equal to its own).
      params: hyperparameters for the strategy (no restarts).
      dtype: ``"float64"`` (the default, as pycma) or ``"float32"``: the precision of
        the strategy and of the points passed to `fn`, for this call only.
      problem: the problem keywords ``batched``, ``constraints``, ``encoding`` and
        ``noise_handling`` (`ProblemKeywords`, listed at the end; bounds are pycma's
        options ``bounds`` and ``BoundaryHandler``). `constraints` is a host function
        of a point returning ``m`` values, as in ``cma.fmin_con2``: ``xbest`` is then
        the final mean (pycma's ``xfavorite``) and ``fbest`` the best feasible f
        evaluated (inf if none). With `encoding`, `x0` and ``xbest`` are in `fn`'s
        parameters.
      schedule: the restart schedule (`RestartKeywords`; ``restarts`` defaults to 0, as
        in pycma, and to 9 in `evojax_cma.minimize_restarts`). ``ftarget`` and
        ``maxfevals`` (over all runs) end everything. Each population size is compiled
        once per process.
      recording: `RecordingKeywords` but ``segment`` (the host loop steps one
        generation at a time). ``history``: ``result.history`` is then the `History`
        over all runs, as in `evojax_cma.minimize_restarts`, instead of pycma-style
        rows. ``progress`` is updated every generation, independent of ``verbose``
        (pass ``"verbose": 0`` for the bar alone). ``checkpoint``: an ``.npz`` file
        (`evojax_cma.run.host_files`; write-then-rename, no pickle) with the
        `FminCheckpoint` of the run, every ``checkpoint_every`` generations (counted
        over all runs; default 100). ``resume``: such a file, or the ``resume`` of an
        `FminError`: continue from before the generation that failed, with the same
        settings (only ``verbose``, ``verb_disp``, `fn`, `constraints`' function,
        ``batched``, `executor`, and `x0` of the same dimension, used by later
        restarts, may change; a file of another run is a `ValueError` naming each
        setting that differs). With a deterministic `fn`, the run ends as one that
        never failed.

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
    checkpoint, checkpoint_every = recording.checkpoint, recording.checkpoint_every
    history_spec(recording.history)  # checked before anything runs
    if checkpoint is not None and not host_files.is_path(checkpoint):
        raise TypeError(f"checkpoint must be a file path, got {type(checkpoint).__name__}")
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every, 1)
        if checkpoint is None:
            raise ValueError("checkpoint_every needs checkpoint= (a file path)")
    bar = progress_bar(recording.progress)
    host = {"executor": executor, "strategy": strategy, "params": params, "dtype": dtype}
    try:
        with jax.enable_x64(dtype == "float64"):
            groups = (problem, schedule, recording)
            return _fmin(fn, x0, sigma0, dict(options or {}), *groups, bar, **host)
    finally:
        if bar is not None:
            bar.close()


def _fmin(fn, x0, sigma0, options, problem, schedule, recording, bar, *, executor, **kw):
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    check_options("fmin option(s)", options, FMIN_OPTIONS | set(STOP_NAMES))
    strategy, params, resume = kw["strategy"], kw["params"], recording.resume
    constraints, restarts = problem.constraints, schedule.restarts
    spec = kw["history"] = history_spec(recording.history)
    checkpoint, every = recording.checkpoint, recording.checkpoint_every or 100
    saving = None if checkpoint is None else (checkpoint, every)
    key = jax.random.key(check_seed(options.get("seed", 0)))
    verbose = int_option(options, "verbose", 1, None)
    verb_disp = int_option(options, "verb_disp", 100, 0)
    if callable(x0):
        check_x0_function(x0)
        draw_x0 = x0
    else:
        draw_x0 = lambda key: x0  # noqa: E731
    key, k_x0 = prng.split(key)
    resume_file = resume if host_files.is_path(resume) else None
    if resume is None:
        x_first = as_x0(draw_x0(k_x0))
        n = x_first.shape[0]
    else:
        if resume_file is not None:
            n, resume_popsize, m = host_files.read_dimension(resume_file)
        else:
            n, m = (check_resume(resume, None).settings[k] for k in ("n", "num_constraints"))
        x_first = None if callable(x0) else as_x0(x0, n)
    check_positive_scalar("sigma0", sigma0)
    check_strategy_options(strategy, params, restarts, options, n)
    popsize = options.get("popsize") if strategy is None else strategy.popsize
    config = restart_config(n, popsize, restarts, schedule.incpopsize, schedule.bipop)
    if resume is not None:
        m = int(m)
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
        encoding=problem.encoding,
        noise_handling=problem.noise_handling,
        num_constraints=m,
    )
    stop_opts = pipeline.stop_defaults({k: options[k] for k in STOP_NAMES if k in options})
    settings = {
        "n": n,
        "dtype": kw["dtype"],
        "sigma0": float(sigma0),
        "options": {k: v for k, v in options.items() if k not in DISPLAY_SETTINGS},
        "restarts": restarts,
        "bipop": schedule.bipop,
        "incpopsize": schedule.incpopsize,
        "strategy": strategy,
        "params": params,
        "pipeline": pipeline,
        "constraints": constraints is not None,
        "num_constraints": m,
        "history": spec,
    }
    evaluate = partial(evaluate_on_host, fn, batched=problem.batched, executor=executor)
    host_g = None if constraints is None else partial(constraint_values, constraints, m=m)
    fail = partial(fmin_error, pipeline, constraints is not None)

    if resume is None:
        schedule, factor, maxiter_cap = first_run(config), 1.0, np.inf
        best, history, run, state, start = None, [], None, None, x_first
        recorded = None if spec is None else init_history(n, jnp.dtype(kw["dtype"]), *spec)
    else:
        if resume_file is not None:
            resume = host_files.load(
                resume_file, settings, _like(strategy, pipeline, params, n, resume_popsize, kw)
            )
        resume = check_resume(resume, settings)
        key, schedule, factor = resume.key, resume.schedule, resume.sigma_factor
        maxiter_cap, best, history = resume.maxiter_cap, resume.best, list(resume.history)
        run, state, start, recorded = resume.run, resume.last_state, None, resume.recorded
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
            before = FminCheckpoint(*outer, best, tuple(history), None, state, recorded)
            key, k_run, k_plan, k_x0 = prng.split(key, 4)
            if start is None:
                start = restart_x0(draw_x0, k_x0, n, partial(fail, checkpoint=before))
            genotype = initial_genotype(pipeline, start)
            state, tstates = start_run(
                run_strategy, pipeline, k_run, genotype, jnp.asarray(sigma0 * float(factor)), params
            )
            if best is None:
                best = step.initial_best(pipeline, state)
            run = RunCheckpoint(k_run, k_plan, state, tstates)
        outer = (settings, key, schedule, factor, maxiter_cap)
        save = None if saving is None else partial(_save_if_due, saving, outer)
        runner = HostRun(
            run_strategy, pipeline, evaluate, host_g, verbose, verb_disp, bar, on_generation=save
        )
        try:
            state, flags, best, recorded = runner(run, best, run_opts, history, schedule, recorded)
        except GenerationFailedError as failed:
            at = FminCheckpoint(
                *outer, failed.best, tuple(history), failed.run, failed.run.state, failed.recorded
            )
            error = fail(failed.error, checkpoint=at, generation=failed.generation)
            raise error from failed.error.__cause__
        k_plan, start, run = run.plan_key, None, None
        reasons = stop_reasons(flags)
        if any(r in ENDS_ALL for r in reasons):
            break
        next_schedule, factor, maxiter_cap, exhausted = plan_next(
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
    result = result._replace(runs=int(schedule.runs))
    if recorded is not None:
        result = result._replace(history=recorded)
    return result.xbest, result


def _save_if_due(saving, outer: tuple[Any, Any, Any, Any, Any], run, best, history, recorded):
    """Write the checkpoint before the next generation when `saving` says it is due."""
    path, every = saving
    if history and len(history) % every == 0:
        at = FminCheckpoint(*outer, best, tuple(history), run, run.state, recorded)
        host_files.save(path, at)


def _like(strategy, pipeline, params, n, popsize, kw) -> FminCheckpoint:
    """An `FminCheckpoint` of the structure a file of a run of `popsize` holds."""
    dtype = jnp.dtype(kw["dtype"])
    run_strategy = strategy or cma_es(n, popsize)
    key = jax.random.key(0)
    state, tstates = start_run(
        run_strategy, pipeline, key, jnp.zeros(n, dtype), jnp.asarray(1.0, dtype), params
    )
    spec = kw["history"]
    recorded = None if spec is None else init_history(n, dtype, *spec)
    run = RunCheckpoint(key, key, state, tstates)
    schedule = first_run(restart_config(n, popsize, 0, 2, False))
    best = step.initial_best(pipeline, state)
    return FminCheckpoint({"n": n}, key, schedule, 1.0, 1.0, best, (), run, state, recorded)


__all__ = ["FminCheckpoint", "FminError", "FminResult", "fmin"]
