"""Evaluating a host (NumPy) objective and constraints on a population, with checks.

`evojax_cma.fmin` evaluates here: point by point, a whole population at once
(``batched``), or through any ``concurrent.futures.Executor`` (``executor.map``: a
process pool, a Dask or Ray client). Values are checked where they arrive: one real
number per point, else a `TypeError`/`ValueError` that says what came back.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np


def evaluate_on_host(
    fn, X: np.ndarray, *, batched: bool, executor: Executor | None, repeats: int = 1
) -> np.ndarray:
    """One value per row of `X`: the median of `repeats` evaluations (NaN ignored)."""
    runs = []
    for _ in range(repeats):
        if batched:
            values = fn(X)
        elif executor is not None:
            values = list(executor.map(fn, list(X)))
        else:
            values = [fn(x) for x in X]
        values = np.asarray(values)
        if values.dtype == object or not np.issubdtype(values.dtype, np.number):
            raise TypeError(
                f"the objective must return real numbers, got {values.dtype} values "
                f"(first: {values.ravel()[0]!r})"
            )
        if np.iscomplexobj(values):
            raise TypeError("the objective must return real numbers, got complex values")
        values = values.astype(np.float64)
        if values.shape != (X.shape[0],):
            raise ValueError(
                f"the objective must return one scalar per point, got shape {values.shape} "
                f"for {X.shape[0]} points"
            )
        runs.append(values)
    if repeats == 1:
        return runs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmedian(np.stack(runs), axis=0)


def constraint_values(constraints: Callable, X: np.ndarray, m: int) -> np.ndarray:
    """``(rows, m)`` host constraint values; a wrong shape is a `ValueError`."""
    G = np.asarray([np.asarray(constraints(x), dtype=np.float64) for x in X])
    if G.shape != (X.shape[0], m):
        raise ValueError(
            f"constraints must return {m} values per point, got shape {G.shape[1:]} "
            f"(for {X.shape[0]} points)"
        )
    return G


def count_host_constraints(constraints: Any, x0: np.ndarray) -> int:
    """The number of host constraints, checked at `x0` (shape and finiteness)."""
    if not callable(constraints):
        raise TypeError(f"constraints must be callable, got {type(constraints).__name__}")
    g0 = np.asarray(constraints(x0), dtype=np.float64)
    if g0.ndim != 1 or g0.size < 1:
        raise ValueError(f"constraints must return a vector (m,) with m >= 1, got {g0.shape}")
    if not np.all(np.isfinite(g0)):
        raise ValueError(f"constraints returned non-finite values at x0: {g0}")
    return int(g0.size)


__all__ = ["constraint_values", "count_host_constraints", "evaluate_on_host"]
