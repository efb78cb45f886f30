r"""A run's history, recorded inside the compiled loop: what pycma's data logger keeps.

`History` is a pytree of fixed-size arrays (``capacity`` rows) that a driver carries
through its ``lax.while_loop``: no host callbacks, so it works under ``vmap`` and on any
device. Every ``stride``-th generation, `record` writes one row of `metrics`: the run it
belongs to, evaluations, best and median f of the generation, the best f so far, f(mean)
where the driver evaluated it, and what the strategy exposes through
``Strategy.metrics`` (`evojax_cma.core.types.METRICS`): σ, the axis ratio, the square
roots of the eigenvalues of C (axis lengths; the per-coordinate stds for diagonal
models), the per-coordinate stds (times σ), the mean (its first ``coordinates`` entries
for huge n) and, for `open_es`/`variational`, the gradient norm and the optimiser's step
size (NaN for the other strategies). A run longer than ``stride * capacity`` generations
keeps its last ``capacity`` records (a ring buffer; `rows` puts them in order).

With restarts (`evojax_cma.minimize_restarts`, `evojax_cma.fmin`), one history covers
the whole schedule: ``generation`` and ``evals`` count over all runs (as pycma's logger
appends the runs of ``fmin``), ``f_best_so_far`` is the best of all runs, and ``run``
(1-based) says which run each record belongs to; `evojax_cma.plot.plot` marks where a
new run starts.

`evojax_cma.plot.plot` draws the four panels of ``cma.plot()`` from it;
`evojax_cma.checkpoint` saves and loads it with the state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core.types import strategy_metrics
from evojax_cma.core.validation import check_int, check_options

FIELDS = (
    "generation",
    "run",
    "evals",
    "f_best_generation",
    "f_median_generation",
    "f_best_so_far",
    "f_mean",
    "sigma",
    "axis_ratio",
    "axis_lengths",
    "stds",
    "mean",
    "grad_norm",
    "step_size",
)
"""The recorded columns, in order (each one ``(capacity, ...)`` array of `History`)."""

SETTINGS = ("capacity", "stride", "coordinates")
"""The settings of a driver's ``history=`` dict (see `init_history`)."""


class History(NamedTuple):
    """Recorded metrics of one run or restart schedule (batched like it under ``vmap``).

    Attributes:
      generation: ``(K,)`` the generation of each record (-1: not written), counted over
        all runs of a restart schedule.
      run: ``(K,)`` the run it belongs to (1-based; 0: not written).
      evals: ``(K,)`` evaluations so far (of all runs).
      f_best_generation: ``(K,)`` the best f of that generation (as told).
      f_median_generation: ``(K,)`` its median.
      f_best_so_far: ``(K,)`` the best f so far (of all runs).
      f_mean: ``(K,)`` f at the mean where the driver evaluated it, else NaN.
      sigma: ``(K,)`` the step size (the geometric mean for a per-coordinate σ).
      axis_ratio: ``(K,)`` longest over shortest axis of the distribution.
      axis_lengths: ``(K, n)`` sorted square roots of the eigenvalues of C (without σ).
      stds: ``(K, k)`` σ times the per-coordinate standard deviations.
      mean: ``(K, k)`` the first k coordinates of the mean.
      grad_norm: ``(K,)`` the norm of the mean's gradient estimate (`open_es`,
        `variational`; NaN for the others).
      step_size: ``(K,)`` the norm of the optimiser's update of the mean (idem).
      count: number of records written.
      stride: generations between records (an array: it may be traced).
    """

    generation: Array
    run: Array
    evals: Array
    f_best_generation: Array
    f_median_generation: Array
    f_best_so_far: Array
    f_mean: Array
    sigma: Array
    axis_ratio: Array
    axis_lengths: Array
    stds: Array
    mean: Array
    grad_norm: Array
    step_size: Array
    count: Array
    stride: Array


def init_history(
    num_dims: int, dtype: Any, capacity: int = 1000, stride: Any = 1, coordinates: int = 100
) -> History:
    """An empty history of `capacity` records, one every `stride` generations.

    Args:
      num_dims: n.
      dtype: the run's floating dtype.
      capacity: records kept (the last ones when the run is longer).
      stride: generations between two records (>= 1; may be traced).
      coordinates: how many coordinates of the mean and stds are kept (all when n is
        smaller).

    Raises:
      TypeError, ValueError: a capacity or coordinate count that is not an int >= 1, a
        concrete stride < 1.
    """
    capacity = check_int("capacity", capacity, 1)
    k = min(check_int("coordinates", coordinates, 1), num_dims)
    if isinstance(stride, int | np.integer) and not isinstance(stride, bool) and stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    nan = jnp.full((capacity,), jnp.nan, dtype)
    return History(
        generation=jnp.full((capacity,), -1, jnp.int32),
        run=jnp.zeros((capacity,), jnp.int32),
        evals=jnp.zeros((capacity,), jnp.int32),
        f_best_generation=nan,
        f_median_generation=nan,
        f_best_so_far=nan,
        f_mean=nan,
        sigma=nan,
        axis_ratio=nan,
        axis_lengths=jnp.full((capacity, num_dims), jnp.nan, dtype),
        stds=jnp.full((capacity, k), jnp.nan, dtype),
        mean=jnp.full((capacity, k), jnp.nan, dtype),
        grad_norm=nan,
        step_size=nan,
        count=jnp.asarray(0, jnp.int32),
        stride=jnp.asarray(stride, jnp.int32),
    )


def history_spec(history: Any) -> tuple[int, int, int] | None:
    """``(capacity, stride, coordinates)`` from a driver's ``history=`` argument, or None.

    Args:
      history: None/False (no history), True (every generation, the last 1000 records,
        100 coordinates) or a dict of `SETTINGS`.

    Raises:
      TypeError, ValueError: another type, an unknown setting, a value that is not an
        int >= 1. Checked before anything is traced, by every driver.
    """
    if history is None or history is False:
        return None
    if history is True:
        history = {}
    if not isinstance(history, dict):
        raise TypeError(f"history must be a bool or a dict of settings, got {history!r}")
    check_options("history setting(s)", history, frozenset(SETTINGS))
    spec = (
        history.get("capacity", 1000),
        history.get("stride", 1),
        history.get("coordinates", 100),
    )
    for name, value in zip(SETTINGS, spec, strict=True):
        check_int(f"history {name}", value, 1)
    return spec


def metrics(
    strategy: Any, state: Any, fitness: Array, f_mean: Any = jnp.nan, **overrides: Any
) -> dict[str, Array]:
    """One record's values from a strategy state after ``tell`` and its generation's f.

    Args:
      strategy: the `evojax_cma.Strategy` (its ``metrics`` are read; those it lacks,
        e.g. ``grad_norm`` for CMA-ES, are NaN).
      state: the state after ``tell``.
      fitness: ``(rows,)`` the generation's f (non-finite values, and rows beyond a
        masked population's λ, ignored).
      f_mean: f at the mean, where known.
      **overrides: what a driver knows better than one state: ``generation``, ``evals``
        and ``f_best_so_far`` over all runs of a schedule, and ``run``.
    """
    from evojax_cma.run.step import popsize_of  # noqa: PLC0415 (run imports this module)

    dtype = state.mean.dtype
    in_use = jnp.arange(fitness.shape[-1]) < popsize_of(strategy, state)  # masked λ
    told = jnp.where(jnp.isfinite(fitness) & in_use, fitness, jnp.nan)
    nan = jnp.asarray(jnp.nan, dtype)
    values = dict(
        generation=state.generation,
        run=jnp.asarray(1, jnp.int32),
        evals=state.evals,
        f_best_generation=jnp.nanmin(told),
        f_median_generation=jnp.nanmedian(told),
        f_best_so_far=state.best_f,
        f_mean=jnp.asarray(f_mean, dtype),
        grad_norm=nan,
        step_size=nan,
    )
    values.update(strategy_metrics(strategy, state))
    values.update(overrides)
    return values


def record(history: History, values: dict[str, Array]) -> History:
    """`history` with `values` written as a new record if the generation is due.

    A generation ``g`` (1-based, from ``values["generation"]``) is due when
    ``g % stride == 0``; the record goes to row ``count % capacity``.
    """
    capacity = history.generation.shape[0]
    due = values["generation"] % history.stride == 0
    row = history.count % capacity
    k = history.mean.shape[-1]
    new = {}
    for name in FIELDS:
        column = getattr(history, name)
        value = values[name]
        if name in ("stds", "mean"):
            value = value[..., :k]
        value = jnp.asarray(value, column.dtype)
        new[name] = jnp.where(due, column.at[row].set(value), column)
    return History(**new, count=history.count + due.astype(jnp.int32), stride=history.stride)


_FILLERS = {"generation": -1, "evals": 0, "run": 0}


def rows(history: History) -> dict[str, np.ndarray]:
    """The written records in generation order, as NumPy arrays (host side).

    A batched history (from ``vmap``) gives arrays with the batch axes first; runs that
    wrote fewer records are padded with NaN (generation -1, run 0, evals 0) at the end.
    """
    h = {name: np.asarray(getattr(history, name)) for name in (*FIELDS, "count")}
    capacity = h["generation"].shape[-1]
    count = h.pop("count")
    batch = count.shape
    out = {name: np.empty_like(v) for name, v in h.items()}
    for index in np.ndindex(*batch) if batch else [()]:
        c = int(count[index])
        order = np.arange(capacity) if c <= capacity else (np.arange(capacity) + c) % capacity
        n_rows = min(c, capacity)
        for name, v in h.items():
            column = v[index][order]
            padded = np.full_like(column, _FILLERS.get(name, np.nan))
            padded[:n_rows] = column[:n_rows]
            out[name][index] = padded
    return out


__all__ = [
    "FIELDS",
    "SETTINGS",
    "History",
    "history_spec",
    "init_history",
    "metrics",
    "record",
    "rows",
]
