"""Evaluating a host (NumPy) objective and constraints on a population, with checks.

`evojax_cma.fmin` evaluates here: point by point, a whole population at once
(``batched``), or through any ``concurrent.futures.Executor`` (``executor.map``: a
process pool, a Dask or Ray client). Values are checked where they arrive: one real
number per point, else an error that names the function, the value and the candidate.

Every failure is an `EvaluationError` that says which candidate failed (its index in the
population and the point, where known): the objective or the constraints raised (the
original exception is its ``__cause__``), an executor broke (a worker died), or a value
of the wrong type or shape came back. `evojax_cma.fmin` turns it into an
`evojax_cma.FminError` with the run's state before the failing generation attached.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor
from typing import Any

import numpy as np


class EvaluationError(Exception):
    """A host evaluation failed; `fmin` turns it into an `evojax_cma.FminError`.

    Attributes:
      message: what failed, naming the function and the candidate.
      kind: the kind of failure: `RuntimeError` (the function raised, or the executor
        broke; the original exception is ``__cause__``), `TypeError` or `ValueError` (a
        value of the wrong type or shape came back).
      index: the failing candidate's row in the evaluated population (None: unknown,
        e.g. a batched call or a broken executor).
      point: that candidate (None where `index` is None).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: type[Exception] = RuntimeError,
        index: int | None = None,
        point: np.ndarray | None = None,
    ):
        super().__init__(message)
        self.message, self.kind, self.index, self.point = message, kind, index, point

    @classmethod
    def at(
        cls, message: str, i: int, x: Any, kind: type[Exception] = RuntimeError
    ) -> EvaluationError:
        """The error of candidate `i` at point `x`: `message` + ``at candidate i (x = ...)``."""
        return cls(f"{message} at candidate {i} (x = {x!r})", kind=kind, index=i, point=np.array(x))


def function_name(fn: Any) -> str:
    """A readable name of a user function (``__qualname__`` where it has one)."""
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def evaluate_on_host(
    fn, X: np.ndarray, *, batched: bool, executor: Executor | None, repeats: int = 1
) -> np.ndarray:
    """One value per row of `X`: the median of `repeats` evaluations (NaN ignored).

    Raises:
      EvaluationError: `fn` raised, the executor broke, or `fn` returned something other
        than one real number per point; the candidate is named where known.
    """
    what = f"the objective {function_name(fn)}"
    runs = []
    for _ in range(repeats):
        if batched:
            try:
                values = fn(X)
            except Exception as exc:
                raise EvaluationError(
                    f"{what} raised {type(exc).__name__}: {exc} (batched call on "
                    f"{X.shape[0]} points)"
                ) from exc
            runs.append(_batched_values(what, values, X))
        else:
            values = _map_points(what, fn, X, executor)
            runs.append(np.asarray([_scalar(what, v, i, X[i]) for i, v in enumerate(values)]))
    if repeats == 1:
        return runs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmedian(np.stack(runs), axis=0)


def _map_points(what: str, fn: Callable, X: np.ndarray, executor: Any) -> list:
    """``fn`` on each row of `X`, in order (through ``executor.map`` if given)."""
    executor = as_executor(executor)
    values: list = []
    results = (fn(x) for x in X) if executor is None else executor.map(fn, list(X))
    try:
        for value in results:
            values.append(value)
    except BrokenExecutor as exc:
        i = len(values)
        raise EvaluationError(
            f"the executor broke while evaluating {what} ({type(exc).__name__}: {exc}); "
            f"a worker died while candidates {i}..{X.shape[0] - 1} were pending (the one "
            "that killed it is unknown)"
        ) from exc
    except Exception as exc:
        i = len(values)
        if not worker_died(exc):
            raise EvaluationError.at(f"{what} raised {type(exc).__name__}: {exc}", i, X[i]) from exc
        note = ""
        if type(exc).__name__ == "KilledWorker":
            note = (
                "; Dask fails every task it had sent to that worker, and this is the first of "
                "them (evojax_cma.run.host_evaluation.as_executor: the settings that blame "
                "only the running one)"
            )
        raise EvaluationError(
            f"a worker died while evaluating {what} at candidate {i} (x = {X[i]!r}) "
            f"({type(exc).__name__}: {exc}){note}",
            index=i,
            point=np.array(X[i]),
        ) from exc
    return values


WORKER_DEATHS = ("KilledWorker", "WorkerCrashedError")
"""Exceptions by which an executor blames a task for its worker's death: Dask's
``distributed.KilledWorker`` and Ray's ``ray.exceptions.WorkerCrashedError`` (matched
by class name: neither package is a dependency)."""


def worker_died(exc: BaseException) -> bool:
    """Whether `exc` says that a worker died (rather than that the function raised).

    A ``concurrent.futures.BrokenExecutor`` (a process pool whose worker died: every
    pending call fails with it) or an exception of `WORKER_DEATHS` (the executor fails
    the tasks it had on the worker that died: Ray the running one, Dask every task it
    had sent there).
    """
    return isinstance(exc, BrokenExecutor) or any(
        cls.__name__ in WORKER_DEATHS for cls in type(exc).__mro__
    )


def as_executor(executor: Any) -> Executor | None:
    """`executor` as a ``concurrent.futures.Executor`` (None stays None).

    A Dask ``Client`` becomes its own ``client.get_executor(pure=False)`` (``Client.map``
    returns futures, not values). ``pure=False``: Dask would otherwise name a task by its
    function and point and compute equal tasks once, so a noisy objective would give one
    value to equal points and to the repeats of noise handling.

    A worker that dies fails the candidate it was running with ``KilledWorker`` only once
    Dask gave up retrying it on other workers: set ``distributed.scheduler.allowed-failures``
    to 0 to fail at the first death. Dask blames every task the scheduler had sent to
    that worker; ``distributed.scheduler.worker-saturation: 1.0`` sends one task per
    worker thread, so that with one thread per worker only the running task is blamed.

    Raises:
      TypeError: anything else that is not an Executor.
    """
    if executor is None or isinstance(executor, Executor):
        return executor
    get_executor = getattr(executor, "get_executor", None)
    if callable(get_executor):
        try:
            adapted = get_executor(pure=False)
        except TypeError:  # not Dask's: an adapter without the keyword
            adapted = get_executor()
        if isinstance(adapted, Executor):
            return adapted
    raise TypeError(
        "executor must be a concurrent.futures.Executor (a process pool, a Dask Client or "
        f"evojax_cma.RayExecutor()), got {type(executor).__name__}"
    )


class RayExecutor(Executor):
    """A ``concurrent.futures.Executor`` that runs each call as a Ray task.

    Ray has no Executor of its own; ``fmin(..., executor=RayExecutor())`` evaluates each
    candidate as a task of the running Ray cluster (``ray.init()`` first; local or not).
    A task whose worker dies is not retried by default (``max_retries=0``), so the error
    names that candidate.

    Args:
      **options: Ray task options (``num_cpus``, ``max_retries``, ...) for
        ``ray.remote``.
    """

    def __init__(self, **options: Any):
        import ray  # an optional dependency: pip install 'evojax_cma[ray]'

        self._task = ray.remote(**{"max_retries": 0, **options})(_call)

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as a Ray task; a ``concurrent.futures.Future``."""
        return self._task.remote(fn, *args, **kwargs).future()


def _call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``: one Ray task for any callable (functions, instances)."""
    return fn(*args, **kwargs)


def _scalar(what: str, value: Any, i: int, x: np.ndarray) -> float:
    """`value` as a float, or an `EvaluationError` naming the value and the candidate."""
    a = np.asarray(value) if not isinstance(value, str | bytes) else None
    if a is None or a.dtype.kind not in "iuf":
        kind = "complex" if a is not None and a.dtype.kind == "c" else type(value).__name__
        raise EvaluationError.at(
            f"{what} must return real numbers, got {value!r} ({kind})", i, x, TypeError
        )
    if a.shape != ():
        raise EvaluationError.at(
            f"{what} must return one scalar per point, got shape {a.shape}", i, x, ValueError
        )
    return float(a)


def _batched_values(what: str, values: Any, X: np.ndarray) -> np.ndarray:
    """A batched objective's ``(rows,)`` real values, checked."""
    try:
        a = np.asarray(values)
    except ValueError as exc:  # ragged nested sequences
        raise EvaluationError(
            f"{what} must return one scalar per point, got {type(values).__name__} that is "
            f"not an array ({exc})",
            kind=ValueError,
        ) from None
    if a.dtype.kind not in "iuf":
        flat = a.ravel()
        bad = [i for i, v in enumerate(flat) if np.asarray(v).dtype.kind not in "iuf"]
        i = bad[0] if bad else 0
        kind = "complex" if a.dtype.kind == "c" else a.dtype
        first = flat[i] if flat.size else values
        where = f" at candidate {i}" if a.shape == (X.shape[0],) else ""
        raise EvaluationError(
            f"{what} must return real numbers, got {kind} values (first: {first!r}){where}",
            kind=TypeError,
            index=i if where else None,
            point=np.array(X[i]) if where else None,
        )
    if a.shape != (X.shape[0],):
        raise EvaluationError(
            f"{what} must return one scalar per point, got shape {a.shape} for {X.shape[0]} points",
            kind=ValueError,
        )
    return a.astype(np.float64)


def constraint_values(constraints: Callable, X: np.ndarray, m: int) -> np.ndarray:
    """``(rows, m)`` host constraint values, point by point.

    Raises:
      EvaluationError: `constraints` raised at a candidate, or returned something other
        than `m` real values there.
    """
    what = f"the constraints {function_name(constraints)}"
    G = np.empty((X.shape[0], m))
    for i, x in enumerate(X):
        try:
            g = np.asarray(constraints(x))
        except Exception as exc:
            raise EvaluationError.at(f"{what} raised {type(exc).__name__}: {exc}", i, x) from exc
        if g.dtype.kind not in "iuf":
            raise EvaluationError.at(f"{what} must return real numbers, got {g!r}", i, x, TypeError)
        if g.shape != (m,):
            raise EvaluationError.at(
                f"{what}: constraints must return {m} values per point, got shape {g.shape}",
                i,
                x,
                ValueError,
            )
        G[i] = g
    return G


def count_host_constraints(constraints: Any, x0: np.ndarray) -> int:
    """The number of host constraints, checked at `x0` (shape and finiteness)."""
    if not callable(constraints):
        raise TypeError(f"constraints must be callable, got {type(constraints).__name__}")
    g0 = np.asarray(constraints(x0))
    if g0.dtype.kind not in "iuf":
        raise TypeError(f"constraints must return real numbers, got {g0!r} at x0")
    if g0.ndim != 1 or g0.size < 1:
        raise ValueError(f"constraints must return a vector (m,) with m >= 1, got {g0.shape}")
    if not np.all(np.isfinite(g0)):
        raise ValueError(f"constraints returned non-finite values at x0: {g0}")
    return int(g0.size)


__all__ = [
    "EvaluationError",
    "RayExecutor",
    "WORKER_DEATHS",
    "as_executor",
    "constraint_values",
    "count_host_constraints",
    "evaluate_on_host",
    "function_name",
    "worker_died",
]
