"""What `evojax_cma.fmin` returns, raises, and resumes from.

When the objective or the constraints raise on a candidate, an executor breaks (a
worker died), a value of the wrong type or shape comes back, or an ``x0`` function fails
at a restart, `fmin` raises an `FminError` instead of losing the run. It names the
candidate (its row in the population and the point, where known), the generation and the
run; chains the original exception (``raise ... from exc``); and carries

* ``.result``: an `FminResult` of the optimisation so far (best point and value,
  evaluations, iterations and history rows before the failing generation), and
* ``.resume``: an `FminCheckpoint` with the strategy state, the transformations' states,
  the keys, the restart schedule, the best point and the history as they were before
  the failing generation.

``fmin(fn, x0, sigma0, options, ..., resume=err.resume)`` with the same settings redoes
that generation and continues: with a deterministic objective, the run ends exactly as a
run that never failed. `FminTypeError` and `FminValueError` (a value of the wrong type or
shape) are also `TypeError` and `ValueError`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np


class FminResult(NamedTuple):
    """Outcome of `fmin`.

    Attributes:
      xbest: best point evaluated (NumPy).
      fbest: its fitness.
      evals: number of evaluations.
      iterations: number of generations.
      stop: names of the termination criteria that fired (empty in the result so far
        of an `FminError`).
      state: the final strategy state.
      history: with ``fmin(..., history=...)``, the recorded
        `evojax_cma.history.History` of all runs (what `evojax_cma.plot.plot` draws);
        otherwise one row per generation of all runs: ``(iteration, evals, best f of
        the generation, sigma, axis ratio)``.
      runs: number of runs (1 + restarts).
    """

    xbest: np.ndarray
    fbest: float
    evals: int
    iterations: int
    stop: list[str]
    state: Any
    history: Any
    runs: int = 1


class RunCheckpoint(NamedTuple):
    """A run in progress, before the generation that failed.

    Attributes:
      key: the run's key before that generation's split.
      plan_key: the key that plans the next restart when this run ends.
      state: the strategy state.
      tstates: the transformations' states (bounds, noise handling, constraints).
    """

    key: Any
    plan_key: Any
    state: Any
    tstates: tuple[Any, ...]


class FminCheckpoint(NamedTuple):
    """Everything `fmin` needs to continue; pass it as ``fmin(..., resume=checkpoint)``.

    Attributes:
      settings: the settings of the call that made it (compared on resume; display
        options, the functions, ``batched``, ``executor`` and ``x0`` of the same
        dimension may change).
      key: the key of the restart loop (split once per run).
      schedule: where the restart schedule is (`evojax_cma.run.schedule.Schedule`).
      sigma_factor: the factor of ``sigma0`` for the run.
      maxiter_cap: the cap of ``maxiter`` for the run (BIPOP's small runs).
      best: the best point so far (`evojax_cma.run.step.Best`, phenotype and f).
      history: the history rows so far.
      run: the run in progress, or None when the failure came before a run started (the
        ``x0`` function at a restart): the resumed call starts that run.
      last_state: the strategy state of the last run (for the result).
      recorded: the `evojax_cma.history.History` so far (with ``history=``), else None.
    """

    settings: dict[str, Any]
    key: Any
    schedule: Any
    sigma_factor: Any
    maxiter_cap: Any
    best: Any
    history: tuple[tuple, ...]
    run: RunCheckpoint | None
    last_state: Any
    recorded: Any = None


class FminError(RuntimeError):
    """`fmin` stopped because a user function, an executor or a returned value failed.

    The message names the candidate (its row in the population and the point, where
    known), the generation and the run; ``__cause__`` is the original exception.

    Attributes:
      result: an `FminResult` of the optimisation so far (before the failing
        generation; ``stop`` is empty).
      resume: an `FminCheckpoint`: ``fmin(..., resume=err.resume)`` continues from
        before the failing generation.
      candidate: the failing candidate's row in the population (None: unknown, e.g. a
        batched objective, a broken executor or an ``x0`` function).
      point: that candidate as evaluated (None where unknown).
      generation: the generation of the run that failed (1-based; 0 before a run).
      run: the run that failed (1-based; restarts count).
    """

    def __init__(
        self,
        message: str,
        *,
        result: FminResult,
        resume: FminCheckpoint,
        candidate: int | None = None,
        point: np.ndarray | None = None,
        generation: int = 0,
        run: int = 1,
    ):
        super().__init__(message)
        self.result, self.resume = result, resume
        self.candidate, self.point = candidate, point
        self.generation, self.run = generation, run


class FminTypeError(FminError, TypeError):
    """An `FminError` for a value of the wrong type (e.g. an objective returning a str)."""


class FminValueError(FminError, ValueError):
    """An `FminError` for a value of the wrong shape or a non-finite ``x0`` at a restart."""


ERROR_CLASSES: dict[type[Exception], type[FminError]] = {
    RuntimeError: FminError,
    TypeError: FminTypeError,
    ValueError: FminValueError,
}
"""The `FminError` class for each kind of `evojax_cma.run.host_evaluation.EvaluationError`."""


DISPLAY_SETTINGS = ("verbose", "verb_disp")
"""Options that may change on resume (they only change what is printed)."""


def check_resume(checkpoint: Any, settings: dict[str, Any] | None) -> FminCheckpoint:
    """Require a checkpoint made with the same `settings` (None: check the type only).

    Raises:
      TypeError: `checkpoint` is not an `FminCheckpoint`.
      ValueError: a setting differs; the message names each one, old and new.
    """
    if not isinstance(checkpoint, FminCheckpoint):
        raise TypeError(
            "resume must be the FminCheckpoint of an FminError (err.resume), got "
            f"{type(checkpoint).__name__}"
        )
    if settings is None:
        return checkpoint
    old, new = checkpoint.settings, settings
    differ = [k for k in sorted(set(old) | set(new)) if not _same(old.get(k), new.get(k))]
    if differ:
        changes = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ)
        raise ValueError(
            f"resume continues a run with the settings it was started with; these differ: {changes}"
        )
    return checkpoint


def _same(a: Any, b: Any) -> bool:
    """Equality of settings: by value, arrays and pytrees of arrays entry by entry."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        equal = a == b
        if isinstance(equal, bool | np.bool_):
            return bool(equal)
    except (TypeError, ValueError):  # sequences of arrays: compare leaf by leaf
        pass
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    if tree_a != tree_b:
        return False
    try:
        return all(
            np.array_equal(np.asarray(x), np.asarray(y))
            for x, y in zip(leaves_a, leaves_b, strict=True)
        )
    except (TypeError, ValueError):
        return False


def fmin_result(pipeline, constrained, state, best, evals, history, stop) -> FminResult:
    """The `FminResult` of a state (final, or before a failing generation).

    ``xbest`` is the best point (the decoded mean with constraints, as pycma's
    ``xfavorite``); ``runs`` is left at 1 for the caller to set.
    """
    if constrained:
        xbest = np.asarray(pipeline.decode(state.mean), dtype=np.float64)
    else:
        xbest = np.asarray(best.x, dtype=np.float64)
    return FminResult(
        xbest=xbest,
        fbest=float(best.f),
        evals=evals,
        iterations=len(history),
        stop=stop,
        state=state,
        history=np.asarray(history, dtype=np.float64).reshape(len(history), 5),
    )


def fmin_error(
    pipeline: Any,
    constrained: bool,
    error: Any,
    *,
    checkpoint: FminCheckpoint,
    generation: int = 0,
) -> FminError:
    """The `FminError` for a failed evaluation (an `EvaluationError`).

    It carries the result so far and the checkpoint before the failing generation (or,
    for an ``x0`` function at a restart, before the run).
    """
    run = int(checkpoint.schedule.runs)
    running = checkpoint.run is not None
    evals = int(checkpoint.schedule.evals_before)
    if checkpoint.run is not None:
        evals += int(checkpoint.run.state.evals)
    where = f"in generation {generation} of run {run}" if running else f"at the start of run {run}"
    result = fmin_result(
        pipeline,
        constrained,
        checkpoint.last_state,
        checkpoint.best,
        evals,
        checkpoint.history,
        [],
    )._replace(runs=run)
    if checkpoint.recorded is not None:
        result = result._replace(history=checkpoint.recorded)
    message = (
        f"{error.message}, {where}; err.result holds the result so far, and "
        "fmin(..., resume=err.resume) continues from before this "
        f"{'generation' if running else 'run'}"
    )
    return ERROR_CLASSES[error.kind](
        message,
        result=result,
        resume=checkpoint,
        candidate=error.index,
        point=error.point,
        generation=generation,
        run=run,
    )


__all__ = [
    "DISPLAY_SETTINGS",
    "ERROR_CLASSES",
    "FminCheckpoint",
    "FminError",
    "FminResult",
    "FminTypeError",
    "FminValueError",
    "RunCheckpoint",
    "check_resume",
    "fmin_error",
    "fmin_result",
]
