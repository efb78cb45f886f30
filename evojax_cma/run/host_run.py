"""The host driver's generation: jitted pieces with the objective evaluated in between.

`HostRun` runs one run of `evojax_cma.fmin` to its termination: each generation calls
`propose` and `incorporate` (and, with noise handling, the re-evaluation pieces) with the
objective on the host in between, then `observe` (stop flags, the display's values and the
history record). The pieces are jit-compiled once per strategy, pipeline and shape, at
module level, so a second `fmin` call with equal settings, and every restart with a
population size seen before, reuses the compiled code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from evojax_cma.core import prng
from evojax_cma.core.types import Strategy, strategy_metrics
from evojax_cma.history import metrics, record
from evojax_cma.run import step
from evojax_cma.run.host_evaluation import EvaluationError
from evojax_cma.run.host_resume import RunCheckpoint
from evojax_cma.run.schedule import plan_next_run
from evojax_cma.transforms.base import Pipeline
from evojax_cma.transforms.constraints import AugmentedLagrangian

# The jitted pieces: module level, so their caches outlive a call of fmin.
_static = partial(jax.jit, static_argnames=("strategy", "pipeline"))


@_static
def start_run(strategy, pipeline, key, x0, sigma0, params):
    """The first state and transformation states of a run."""
    state = strategy.init(key, x0, sigma0, params)
    return state, pipeline.init(strategy.num_dims, strategy.popsize, state.mean.dtype)


@_static
def propose(strategy, pipeline, key, state):
    """A generation's population and what the pipeline made of it (the points to evaluate last)."""
    population, state, stages = step.propose(strategy, pipeline, key, state)
    return population, state, tuple(stages)


@_static
def incorporate(strategy, pipeline, state, tstates, population, stages, F, G, best):
    """Tell the strategy and the pipeline the host's values ``F`` (and constraints ``G``)."""
    return step.incorporate(
        strategy, pipeline, state, tstates, population, list(stages), F, G, best
    )


@_static
def reevaluation_points(strategy, pipeline, key, state, population, outs):
    """The noise handler's points to evaluate again."""
    return step.reevaluation_points(strategy, pipeline, key, state, population, outs)


@_static
def adapt_to_reevaluation(strategy, pipeline, state, tstates, outs, F2, G2, index, valid, reps):
    """Adapt to the re-evaluated values (noise handling)."""
    return step.adapt_to_reevaluation(
        strategy, pipeline, state, tstates, outs, F2, G2, index, valid, reps
    )


@partial(jax.jit, static_argnames=("strategy",))
def observe(strategy, state, options, F, recorded, counts):
    """Stop flags, ``(sigma, axis ratio, min std, max std)`` and the history with a record.

    `counts` are ``(generation of all runs, evaluations before this run, run, best f)``.
    """
    m = strategy_metrics(strategy, state)
    shown = jnp.stack([m["sigma"], m["axis_ratio"], jnp.min(m["stds"]), jnp.max(m["stds"])])
    if recorded is not None:
        generation, evals_before, run, best_f = counts
        values = metrics(
            strategy,
            state,
            F,
            generation=generation,
            evals=evals_before + state.evals,
            f_best_so_far=best_f,
            run=run,
        )
        recorded = record(recorded, values)
    return strategy.stop(state, options), shown, recorded


plan_next = jax.jit(plan_next_run, static_argnums=0)


class GenerationFailedError(Exception):
    """A generation's evaluation failed: the error and the run before that generation."""

    def __init__(self, error: EvaluationError, run: RunCheckpoint, best, generation, recorded):
        super().__init__(error.message)
        self.error, self.run, self.best, self.generation = error, run, best, generation
        self.recorded = recorded  # the History before that generation (or None)


class HostRun(NamedTuple):
    """One run to its termination, with host evaluations between the jitted pieces."""

    strategy: Strategy
    pipeline: Pipeline
    evaluate: Callable[..., np.ndarray]
    constraints: Callable[[np.ndarray], np.ndarray] | None
    verbose: int
    verb_disp: int
    bar: Any  # a tqdm bar, or None
    on_generation: Callable[..., None] | None = None  # (run, best, history, recorded)

    def __call__(self, run: RunCheckpoint, best, stop_options, history, schedule, recorded):
        """Run until a criterion fires; append to `history`, record into `recorded`.

        Returns ``(state, flags, best, recorded)``. Raises `GenerationFailedError` with the run as
        it was before a generation whose evaluation failed (`history` then holds the rows
        before it).
        """
        key, state, tstates = run.key, run.state, run.tstates
        t0 = time.perf_counter()
        if self.verbose > 0:
            print("Iterat #Fevals   function value  axis ratio  sigma  min&max std  t[m:s]")
        while True:
            before, best_before = RunCheckpoint(key, run.plan_key, state, tstates), best
            if self.on_generation is not None:
                self.on_generation(before, best, history, recorded)
            key, k_gen = prng.split(key)
            try:
                state, tstates, best, F = self._generation(k_gen, state, tstates, best)
            except EvaluationError as error:
                generation = int(before.state.generation) + 1
                raise GenerationFailedError(
                    error, before, best_before, generation, recorded
                ) from error
            counts = (len(history) + 1, schedule.evals_before, schedule.runs, best.f)
            dtype = state.mean.dtype
            flags, shown, recorded = observe(
                self.strategy, state, stop_options, jnp.asarray(F, dtype), recorded, counts
            )
            sigma, ratio, min_std, max_std = (float(v) for v in np.asarray(shown))
            it, evals = int(state.generation), int(schedule.evals_before) + int(state.evals)
            fin = F[np.isfinite(F)]
            fgen = float(fin.min()) if fin.size else float("nan")
            history.append((len(history) + 1, evals, fgen, sigma, ratio))
            if self.bar is not None:
                self.bar.update(1)
                postfix = dict(run=int(schedule.runs), evals=evals, sigma=f"{sigma:.3g}")
                self.bar.set_postfix(best_f=f"{float(best.f):.4g}", **postfix, refresh=False)
            done = bool(np.any(flags))
            shown_now = it <= 3 or done or (self.verb_disp > 0 and it % self.verb_disp == 0)
            if self.verbose > 0 and self.verb_disp > 0 and shown_now:
                elapsed = time.perf_counter() - t0
                print(
                    f"{it:6d} {evals:7d} {fgen:+.9e} {ratio:7.1e} {sigma:7.2e} "
                    f"{min_std:6.0e} {max_std:6.0e} {int(elapsed // 60)}:{elapsed % 60:04.1f}"
                )
            if done:
                return state, flags, best, recorded

    def _generation(self, k_gen, state, tstates, best):
        """One generation: ``(state, tstates, best, F)``; raises `EvaluationError`."""
        strategy, pipeline = self.strategy, self.pipeline
        dtype = state.mean.dtype
        population, state, stages = propose(strategy, pipeline, k_gen, state)
        X = np.asarray(stages[-1])
        repeats = int(step.repeats_now(pipeline, tstates))
        F = self.evaluate(X, repeats=repeats)
        G = None if self.constraints is None else jnp.asarray(self.constraints(X), dtype)
        state, tstates, outs, best = incorporate(
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
                prng.fold_in(k_gen, 2), state, population, outs, repeats
            )
            state, tstates = adapt_to_reevaluation(
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
        index, valid, moved = reevaluation_points(
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


__all__ = [
    "GenerationFailedError",
    "HostRun",
    "adapt_to_reevaluation",
    "incorporate",
    "observe",
    "plan_next",
    "propose",
    "reevaluation_points",
    "start_run",
]
