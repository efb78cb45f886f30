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

The whole schedule is one `RestartCarry` (current run, schedule, keys, best point,
history) advanced by a loop compiled with the generation to stop at as a traced
argument, so progress bars, checkpoints and resuming (`evojax_cma.run.segments`) give
bit-identical results, mid-run or between runs. (About 400 lines: the driver, its carry
and loop, and `uniform_x0`, the x0 of every driver, which was born here.)
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

from evojax_cma.core import prng, progress, termination
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import (
    any_traced,
    check_int,
    check_key,
    check_options,
    check_sigma0,
    state_dtype,
)
from evojax_cma.history import history_spec, init_history, metrics
from evojax_cma.history import record as record_history
from evojax_cma.run.arguments import (
    check_x0_function,
    check_x0_vector,
    initial_genotype,
    problem_and_pipeline,
)
from evojax_cma.run.keywords import (
    ProblemKeywords,
    RecordingKeywords,
    RestartKeywords,
    driver,
    takes,
)
from evojax_cma.run.schedule import (
    ENDS_ALL,
    first_run,
    plan_next_run,
    restart_config,
    run_stop_options,
)
from evojax_cma.run.segments import Counters, reporting, run_in_segments
from evojax_cma.run.step import Best, generation, initial_best
from evojax_cma.strategies.cma_es import cma_es


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
      history: with ``history=``, one `evojax_cma.history.History` of the whole
        schedule (``run`` says which run a record belongs to), else None.
    """

    best_x: Array
    best_f: Array
    evals: Array
    runs: Array
    small_runs: Array
    popsize: Array
    state: Any
    stop_flags: Array
    history: Any = None


class RestartCarry(NamedTuple):
    """Everything a restart schedule carries from one generation to the next (a pytree).

    The schedule can stop after any generation (in the middle of a run, or right after a
    restart was planned) and continue from its carry bit for bit: `minimize_restarts`'s
    segments, progress bar and checkpoints.
    """

    key: Array
    state: Any  # the current run's strategy state
    opts: Any  # the current run's StopOptions
    tstates: Any
    schedule: Any  # `evojax_cma.run.schedule.Schedule`
    best: Best
    flags: Array  # the flags of the last generation's run
    done: Array  # the whole optimisation is over
    generation: Array  # generations of all runs
    history: Any


_STATIC = ("strategy", "pipeline", "x0_fn", "config", "record")


def _start_run(strategy, pipeline, x0_fn, config, key, x0, sigma0, overrides, plan):
    """A run's state, stop options and transformation states (`plan`: schedule, σ factor, cap)."""
    schedule, sigma_factor, maxiter_cap = plan
    n = strategy.num_dims
    dtype = _dtype(x0_fn, x0)
    k_x0, k_init = prng.split(key)
    start_x = x0 if x0_fn is None else initial_genotype(pipeline, x0_fn(k_x0))
    params = strategy.default_params(schedule.popsize)
    state = strategy.init(k_init, jnp.asarray(start_x, dtype), sigma0 * sigma_factor, params)
    opts = run_stop_options(n, schedule.popsize, overrides, schedule.evals_before, maxiter_cap)
    return state, opts, pipeline.init(n, config.popsize, dtype)


def _dtype(x0_fn, x0):
    return jnp.result_type(float) if x0_fn is not None else progress.start_point(x0).dtype


@partial(jax.jit, static_argnames=_STATIC)
def _start(strategy, pipeline, x0_fn, config, record, key, x0, sigma0, overrides):
    key, k_start, n = *prng.split(key), strategy.num_dims
    schedule = first_run(config)
    run = (strategy, pipeline, x0_fn, config, k_start, x0, sigma0, overrides)
    state, opts, tstates = _start_run(*run, (schedule, 1.0, jnp.inf))
    flags = strategy.stop(state, opts)  # only invalid_input can be set before a generation
    history = None if record is None else init_history(n, state.mean.dtype, *record)
    done = jnp.any(flags & _ends_all())
    zero = jnp.asarray(0, jnp.int32)
    best = initial_best(pipeline, state)
    return RestartCarry(key, state, opts, tstates, schedule, best, flags, done, zero, history)


def _ends_all() -> Array:
    return jnp.asarray([name in ENDS_ALL for name in termination.STOP_NAMES])


@partial(jax.jit, static_argnames=(*_STATIC, "problem", "report"))
def _advance(
    strategy, pipeline, x0_fn, config, record, problem, carry, x0, sigma0, overrides, until, report
):
    """Generations until the schedule ends or `until` generations (of all runs) are done.

    With `report`, the progress bar hears from the loop every `report` generations
    (`evojax_cma.run.segments.reporting`).
    """
    static = (strategy, pipeline, x0_fn, config, record, problem)
    loop = partial(_generations, *static, x0, sigma0, overrides)
    return reporting(loop, _counters, report)(carry, until)


def _generations(
    strategy, pipeline, x0_fn, config, record, problem, x0, sigma0, overrides, carry, until
):
    """`_advance`'s loop (traced): runs and restarts until the schedule ends or `until`."""
    end_all = _ends_all()

    def cond(c: RestartCarry):
        return ~c.done & (c.generation < until)

    def body(c: RestartCarry) -> RestartCarry:
        key, k_ask, k_plan, k_start = prng.split(c.key, 4)
        running = ~c.done & (c.generation < until)  # for batched loops
        state, tstates, best, F = generation(
            strategy, pipeline, problem, k_ask, c.state, c.tstates, c.best, running=running
        )
        flags = strategy.stop(state, c.opts)
        schedule = c.schedule
        history = c.history
        if record is not None:
            values = metrics(
                strategy,
                state,
                F,
                generation=c.generation + 1,
                evals=schedule.evals_before + state.evals,
                f_best_so_far=best.f,
                run=schedule.runs,
            )
            history = record_history(history, values)

        def restart(args):
            state, _, _, schedule = args
            schedule, factor, maxiter_cap, exhausted = plan_next_run(
                config, schedule, state.evals, k_plan
            )
            run = (strategy, pipeline, x0_fn, config, k_start, x0, sigma0, overrides)
            new_state, new_opts, new_aux = _start_run(*run, (schedule, factor, maxiter_cap))
            # a run drawn with invalid input (x0 function returning NaN) ends everything
            invalid = strategy.stop(new_state, new_opts)[-1]
            return new_state, new_opts, new_aux, schedule, exhausted, invalid

        def keep(args):
            return (*args, jnp.asarray(False), jnp.asarray(False))

        run_over = jnp.any(flags)
        ends_all = jnp.any(flags & end_all)
        restarted = lax.cond(
            run_over & ~ends_all, restart, keep, (state, c.opts, tstates, schedule)
        )
        invalid_next = restarted[-1]
        flags = flags.at[-1].set(flags[-1] | invalid_next)
        restarted = restarted[:-1]
        done = ends_all | restarted[-1] | invalid_next
        # A finished optimisation keeps its last run's state, options and schedule.
        state, opts, tstates, schedule = jax.tree.map(
            lambda old, new: jnp.where(done, old, new),
            (state, c.opts, tstates, schedule),
            restarted[:-1],
        )
        return RestartCarry(
            key, state, opts, tstates, schedule, best, flags, done, c.generation + 1, history
        )

    return lax.while_loop(cond, body, carry)


def _counters(carry: RestartCarry) -> Counters:
    evals = carry.schedule.evals_before + carry.state.evals
    return Counters(carry.generation, evals, carry.best.f, carry.state.sigma, carry.done)


def _result(carry: RestartCarry) -> RestartResult:
    state, schedule = carry.state, carry.schedule
    return RestartResult(
        best_x=carry.best.x,
        best_f=carry.best.f,
        evals=schedule.evals_before + state.evals,
        runs=schedule.runs,
        small_runs=schedule.small_runs,
        popsize=schedule.popsize,
        state=state,
        stop_flags=carry.flags,
        history=carry.history,
    )


@dataclasses.dataclass(frozen=True)
class UniformX0:
    """A uniform draw from the box ``[lower, upper]`` (a value: equal boxes compare equal)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __call__(self, key: Array) -> Array:
        """A uniform point of the box."""
        lower = jnp.asarray(self.lower, jnp.result_type(float))
        return prng.uniform(key, lower.shape, lower.dtype, lower, jnp.asarray(self.upper))


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


@driver(
    problem=takes(ProblemKeywords, without=("n_repeats", "common_keys")),
    schedule=takes(RestartKeywords, restarts=9),  # fmin: 0, pycma's default
    recording=RecordingKeywords,
)
def minimize_restarts(
    fn: Callable[[Array], Array],
    key: Array,
    x0: Any,
    sigma0: Any,
    options: dict[str, Any] | None = None,
    *,
    popsize: int | None = None,
    max_popsize: int | None = None,
    preset: str = "pycma",
    active: bool = True,
    num_dims: int | None = None,
    problem: ProblemKeywords,
    schedule: RestartKeywords,
    recording: RecordingKeywords,
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
      popsize: λ0 (default ``4 + floor(3 ln n)``).
      max_popsize: rows of the masked population (default ``λ0 incpopsize^restarts``).
      preset: as for `evojax_cma.cma_es`.
      active: as for `evojax_cma.cma_es`.
      num_dims: n; checked against `x0`'s output when `x0` is a function.
      problem: the problem keywords (`ProblemKeywords`, listed at the end) but
        ``n_repeats`` and ``common_keys``, as plain keywords. `x0` (and what an `x0`
        function returns) is a phenotype; constraints and noise handling start afresh in
        every run.
      schedule: the restart schedule (`RestartKeywords`); ``restarts`` defaults to 9
        here (restarting is what this driver is for), to 0 in `evojax_cma.fmin` (pycma's
        default).
      recording: as in `evojax_cma.minimize`, over the whole schedule: the history's
        ``generation`` and ``evals`` count over all runs and ``run`` says which run a
        record belongs to; a checkpoint holds the schedule's whole carry (current run,
        schedule, keys, best point, history), and ``resume`` continues it mid-run or
        between runs. The dimension, the schedule's settings (restarts, bipop,
        incpopsize, popsize, max_popsize, preset, active) and the options must be those
        it was saved with (a clear `ValueError` otherwise).

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
    config = restart_config(
        n, popsize, schedule.restarts, schedule.incpopsize, schedule.bipop, max_popsize
    )
    strategy: Strategy = cma_es(
        n, config.popsize, max_popsize=config.max_popsize, preset=preset, active=active
    )
    start = jax.ShapeDtypeStruct((n,), dtype) if x0_fn is not None else x0
    objective, pipeline = problem_and_pipeline(strategy, fn, start, problem)
    options = pipeline.stop_defaults(options)
    overrides = {k: jnp.asarray(v) for k, v in options.items()}
    if x0_fn is None:
        x0 = initial_genotype(pipeline, x0)
    record = history_spec(recording.history)
    static = (strategy, pipeline, x0_fn, config, record)
    carry = _start(*static, key, x0, sigma0, overrides)
    args = (x0, sigma0, overrides)
    settings = {"driver": "minimize_restarts", "num_dims": n, "schedule": list(config)}
    settings.update(preset=preset, active=active)
    saved = recording.checkpoint is not None or recording.resume is not None
    if saved and not any_traced(options):
        settings["options"] = {k: np.asarray(v).tolist() for k, v in options.items()}
    carry = run_in_segments(
        lambda c, until, report: _advance(*static, objective, c, *args, until, report),
        carry,
        **recording.segments(),
        metadata=settings,
        counters=_counters,
    )
    return _result(carry)


__all__ = ["RestartResult", "minimize_restarts", "uniform_x0"]
