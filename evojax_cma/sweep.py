"""Sweeps in one call: a grid (or a random sample of it) of params × starts × seeds.

`sweep` runs `evojax_cma.minimize` once per row of the Cartesian product of

* the `grid`: values of any numeric params field of the strategy, by name, turned into
  params by ``strategy.default_params(**overrides)`` inside the compiled program (so what
  depends on an override is re-derived, e.g. CMA's negative weights from ``c1``);
* the starts: ``x0s`` and/or ``sigma0s`` (paired when both are given);
* the `seeds`: run ``i`` uses ``jax.random.key(seed_i)``, so a row is reproduced alone by
  ``minimize(strategy, fn, jax.random.key(seed), x0, sigma0,
  strategy.default_params(**settings), options)``.

Every run stops on its own criteria. The result is a `SweepResult`: a tidy table (NumPy
structured array, ``to_pandas()``), the batched `evojax_cma.RunResult` (final states and
histories, runs on the leading axis, for `evojax_cma.plot.plot`) and ``heatmap`` for
`evojax_cma.plot.heatmap`.

Layout (``layout=``; ``benchmarks/sweep_layout.py``, ``results/sweep_layout_cpu.json``):

* ``"vmap"``: one batched ``while_loop`` over the runs of a batch: one kernel launch serves
  every run, but the batch iterates until its slowest run stops (finished runs are frozen,
  not free) and a CMA eigendecomposition runs for the batch when one run needs it.
* ``"map"``: ``lax.map`` over runs in one program (``width=w``: over vmapped groups of w);
  each run (group) loops only as long as it needs.
* ``"loop"``: a Python loop over one jitted single run (compiled once, called per run).

``"auto"`` (the default) is ``"loop"`` on CPU and ``"vmap"`` on accelerators. Measured on
this project's 2 shared CPU cores (medium settings, noisy): steady times were within ±25 %
of each other for 36 CMA-ES runs on the 10-D ellipsoid (runs of 278-468 generations) and
12 OpenAI-ES runs on a digits MLP; the loop compiled in half the time of the batched
programs on the MLP (11 vs 22 s) and about as fast as the fastest of them on CMA-ES, and
compilation dominates a sweep's wall time at these sizes
(``results/sweep_layout_medium_cpu.json``). The loop pays ~2.4 ms per run: 256 runs
of the 2-D sphere took 0.62 s against 0.31 s vmapped (pass ``layout="vmap"`` for many
short runs swept again and again). Accelerators run a vmapped batch in parallel (not
measured here: no accelerator). With ``"loop"`` a row equals the run done alone with
`evojax_cma.minimize`, bit for bit.

Runs execute in batches of ``batch_size`` (or as many as `memory_budget` bytes allow,
estimated with ``jax.eval_shape``; the loop holds one run at a time); the last batch is
padded so one program serves all.

(About 550 lines, over the ~400 the project aims at: the driver, the checks of its inputs
before tracing and its result table belong together, and each part is small.)
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from evojax_cma.core import prng
from evojax_cma.core.termination import StopOptions, stop_reasons
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import check_int, check_sigma0, state_dtype
from evojax_cma.run.arguments import check_x0_vector, problem_and_pipeline
from evojax_cma.run.keywords import (
    EvaluationKeywords,
    ProblemKeywords,
    RecordingKeywords,
    driver,
    field_names,
    keyword_items,
    takes,
)
from evojax_cma.run.loop import RunResult, minimize
from evojax_cma.run.step import fitness_keys, objective_values

LAYOUTS = ("vmap", "map", "loop")
"""The ways `sweep` can lay runs out (see the module docstring)."""

_NOT_SWEPT = ("progress", "segment", "checkpoint", "checkpoint_every", "resume")

_SWEPT = driver(
    problem=ProblemKeywords,
    evaluation=EvaluationKeywords,
    recording=takes(RecordingKeywords, "history"),  # the others are a single run's
)
"""The shared keywords of `sweep` and `run_bytes`: those of a `minimize` run in a sweep."""


@dataclasses.dataclass(frozen=True, eq=False)
class _Setup:
    """What every run of a sweep shares: a static argument of the compiled programs."""

    strategy: Strategy
    fn: Callable[..., Any]
    options: Any
    keywords: tuple[tuple[str, Any], ...]

    def _key(self) -> Any:
        options = self.options
        if isinstance(options, dict):
            options = tuple(sorted(options.items()))
        return (self.strategy, self.fn, options, self.keywords)

    def __hash__(self) -> int:
        try:
            return hash(self._key())
        except TypeError:  # arrays among the settings: compile for this sweep only
            return id(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Setup):
            return False
        try:
            return bool(self._key() == other._key())
        except (TypeError, ValueError):
            return self is other


def _run_one(
    setup: _Setup, seed: Any, x0: Any, sigma0: Any, params: Any, data: Any
) -> tuple[Any, Any]:
    """One run of the sweep and f at its final mean (traceable; vmapped or mapped).

    f(mean) is evaluated as the run evaluates its points (`objective_values`: the mean's
    phenotype, the data, ``n_repeats`` keys drawn from ``fold_in(key, 1)``).
    """
    kw = dict(setup.keywords)
    key = jax.random.key(seed)
    res = minimize(
        setup.strategy, setup.fn, key, x0, sigma0, params, setup.options, data=data, **kw
    )
    given = {k: v for k, v in kw.items() if k in field_names(ProblemKeywords)}
    problem, pipeline = problem_and_pipeline(
        setup.strategy, setup.fn, None, ProblemKeywords(**given), data=data
    )
    x = pipeline.decode(res.state.mean)[None]
    keys = fitness_keys(problem, prng.fold_in(key, 1), 1)
    return res, objective_values(problem, x, keys, data)[0]


@partial(jax.jit, static_argnames=("setup", "layout", "width"))
def _run_batch(setup: _Setup, layout: str, width: int, seeds, x0s, sigma0s, params, data):
    def one(seed, x0, sigma0, p):
        return _run_one(setup, seed, x0, sigma0, p, data)  # data: shared, not batched

    if layout == "vmap":
        return jax.vmap(one)(seeds, x0s, sigma0s, params)
    group = width if width > 1 else None
    return lax.map(lambda a: one(*a), (seeds, x0s, sigma0s, params), batch_size=group)


_run_single = jax.jit(_run_one, static_argnames="setup")


class SweepResult(NamedTuple):
    """What `sweep` returns.

    Attributes:
      table: one row per run (NumPy structured array): ``run``, the swept fields,
        ``x0_index`` (with ``x0s``), ``sigma0``, ``seed``, ``best_f`` (the best evaluated
        f, in the objective's sign), ``f_mean`` (f at the final mean), ``evals``,
        ``generations`` and ``stop`` (`evojax_cma.stop_reasons`, comma-separated).
      results: the runs' `evojax_cma.RunResult`, runs on the leading axis (host arrays):
        final states, stop flags and, with ``history=``, the histories.
      grid: the swept values of each field (before sampling), plus ``sigma0``/``x0_index``
        when those were swept.
      layout: the layout used.
      batch_size: runs per compiled call (1 for the loop).
    """

    table: np.ndarray
    results: RunResult
    grid: dict[str, np.ndarray]
    layout: str
    batch_size: int

    def to_pandas(self) -> Any:
        """The table as a pandas ``DataFrame`` (needs pandas)."""
        try:
            import pandas as pd  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - exercised without pandas only
            raise ImportError("to_pandas needs pandas: pip install pandas") from exc
        return pd.DataFrame({name: self.table[name] for name in self.table.dtype.names or ()})

    def cells(self, x: str, y: str, value: str = "best_f") -> tuple[np.ndarray, ...]:
        """``(values, x_values, y_values)``: the median of `value` over the runs of each cell.

        `values` has shape ``(len(y_values), len(x_values))`` (NaN where a random sample
        left a cell empty or none of its runs has a finite value): what
        `evojax_cma.plot.heatmap` takes.
        """
        names = self.table.dtype.names or ()
        for name in (x, y, value):
            if name not in names:
                raise ValueError(f"{name!r} is not a column of the sweep; columns: {names}")
        xs, ys = np.unique(self.table[x]), np.unique(self.table[y])
        out = np.full((ys.size, xs.size), np.nan)
        column = self.table[value].astype(float)
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                hit = (self.table[x] == xv) & (self.table[y] == yv)
                if hit.any():
                    out[i, j] = (
                        np.nanmedian(column[hit]) if np.isfinite(column[hit]).any() else np.nan
                    )
        return out, xs, ys

    def heatmap(self, x: str, y: str, value: str = "best_f", **kwargs: Any) -> Any:
        """`evojax_cma.plot.heatmap` of `value` (median over seeds) over columns `x` and `y`."""
        from evojax_cma.plot import heatmap  # noqa: PLC0415

        values, xs, ys = self.cells(x, y, value)
        return heatmap(values, xs, ys, x_label=x, y_label=y, value_label=value, **kwargs)


@_SWEPT
def sweep(
    strategy: Strategy,
    fn: Callable[..., Any],
    x0: Any = None,
    sigma0: Any = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    seeds: int | Sequence[int] = 1,
    x0s: Any = None,
    sigma0s: Any = None,
    sample: int | None = None,
    sample_seed: int = 0,
    options: StopOptions | dict[str, Any] | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    layout: str = "auto",
    width: int = 1,
    problem: ProblemKeywords,
    evaluation: EvaluationKeywords,
    recording: RecordingKeywords,
    **minimize_keywords: Any,
) -> SweepResult:
    """Run `minimize` over a grid of params × starts × seeds, compiled once.

    Args:
      strategy: e.g. ``evojax_cma.open_es(n, popsize)``.
      fn: the objective, as for `evojax_cma.minimize`.
      x0: the start point of every run (unused when `x0s` is given).
      sigma0: the initial step size of every run (unused when `sigma0s` is given).
      grid: ``{field: values}`` for any scalar field ``strategy.default_params`` takes
        (``learning_rate``, ``c1``, ``c_mu``, ``popsize``, ...); their Cartesian product
        is swept (rows in row-major order of the dict).
      seeds: a count k (seeds 0 … k-1) or the seeds themselves (ints >= 0).
      x0s: ``(k, n)`` start points, an axis of the sweep.
      sigma0s: ``(k,)`` step sizes, an axis; paired with `x0s` when both are given.
      sample: draw this many grid points at random (without replacement, with
        `sample_seed`) instead of the whole product: a random search.
      sample_seed: the seed of `sample`.
      options: termination thresholds for every run (as for `minimize`).
      batch_size: runs per compiled call (default: all, or what `memory_budget` allows;
        the loop layout runs one at a time).
      memory_budget: bytes one call may hold: twice a run's output (state, best point,
        history; ``jax.eval_shape``) plus a population, per run; an estimate.
      layout: ``"auto"`` (``"loop"`` on CPU, else ``"vmap"``), ``"vmap"``, ``"map"`` or
        ``"loop"`` (module docstring).
      width: with ``"map"``, runs vmapped together in each step of the ``lax.map``.
      problem: `minimize`'s problem keywords (`ProblemKeywords`, listed at the end),
        the same for every run.
      evaluation: `minimize`'s test evaluation keywords (`EvaluationKeywords`).
      recording: ``history=`` of `minimize` (recorded for every run).
      **minimize_keywords: `minimize`'s own other keywords (``chunked``,
        ``generations``, ``maximize``, ``data``, ``sharding``), the same for every run.
        ``data`` is a traced argument (new data does not recompile); the others, and
        the shared keywords, are compiled in.

    Returns:
      `SweepResult`. Equality: with ``"loop"`` a row equals the run done alone with
      `minimize`, bit for bit (tested). ``"map"`` and ``"vmap"`` compile the run into a
      larger program whose kernels may round differently (~1e-16 relative per step in
      float64): rows agree with runs alone to rounding, and over long runs a rounding
      difference can flip a ranking and change a trajectory. Batching does not change
      a result: the same layout with another `batch_size` gave the same bits on CPU
      (tested for ``"vmap"``; finished runs are frozen and never trigger another run's
      eigendecomposition), though XLA does not promise it on every backend.

    Raises:
      TypeError: a grid field that is not a params field (the message lists the valid
        ones), an unknown keyword, a minimize keyword that does not fit a sweep.
      ValueError: empty or non-scalar grid values, values out of the field's range,
        ``x0s``/``sigma0s`` of mismatched lengths or bad shapes, non-positive counts.
    """
    if layout not in (*LAYOUTS, "auto"):
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    if layout == "auto":
        layout = "loop" if jax.default_backend() == "cpu" else "vmap"
    width = check_int("width", width, 1)
    bad = sorted(set(minimize_keywords) & set(_NOT_SWEPT))
    if bad:
        raise TypeError(f"sweep does not take {bad} (minimize keywords of a single run)")
    fields, values = _check_grid(strategy, grid)
    combos = list(itertools.product(*[range(len(v)) for v in values]))
    if sample is not None:
        sample = check_int("sample", sample, 1)
        if sample > len(combos):
            raise ValueError(
                f"sample must be at most the grid's {len(combos)} points, got {sample}"
            )
        pick = np.sort(
            np.random.default_rng(sample_seed).choice(len(combos), sample, replace=False)
        )
        combos = [combos[i] for i in pick]
    # concrete params of every grid point: checked (joint ranges too, e.g. c1 + c_mu <= 1)
    # before anything is traced, and the very values minimize(..., default_params(...)) uses
    point_params = [_params_at(strategy, fields, values, combo) for combo in combos]
    starts_x, starts_s, swept = _check_starts(strategy, x0, sigma0, x0s, sigma0s)
    seed_list = _check_seeds(seeds)

    # the rows: grid (outer) × starts × seeds (inner)
    g, s = np.meshgrid(np.arange(len(combos)), np.arange(len(starts_s)), indexing="ij")
    rows = [
        (gi, si, seed) for gi, si in zip(g.ravel(), s.ravel(), strict=True) for seed in seed_list
    ]
    n_runs = len(rows)
    run_seeds = np.array([r[2] for r in rows], np.int32)
    run_x0 = starts_x[[r[1] for r in rows]]
    run_s0 = starts_s[[r[1] for r in rows]]
    run_values = tuple(np.array([v[combos[r[0]][i]] for r in rows]) for i, v in enumerate(values))
    stacked = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *point_params)
    run_params = jax.tree_util.tree_map(lambda a: a[[r[0] for r in rows]], stacked)
    data = minimize_keywords.pop("data", None)  # traced: new data does not recompile
    setup = _setup(strategy, fn, options, (problem, evaluation, recording), minimize_keywords)
    run_args = (run_seeds, run_x0, run_s0, run_params)
    first = jax.tree_util.tree_map(lambda a: a[0], run_args)
    size = _batch_size(setup, n_runs, batch_size, memory_budget, (*first, data))
    size = 1 if layout == "loop" else size
    outputs = []
    for start in range(0, n_runs, size):
        keep = min(size, n_runs - start)
        if layout == "loop":  # one compiled single run, called run by run
            out = _run_single(
                setup, *jax.tree_util.tree_map(lambda a, i=start: a[i], run_args), data
            )
            outputs.append(jax.tree_util.tree_map(lambda a: _to_host(a)[None], out))
            continue
        index = np.minimum(np.arange(start, start + size), n_runs - 1)  # pad the last batch
        args = jax.tree_util.tree_map(lambda a, i=index: a[i], run_args)
        out = _run_batch(setup, layout, width, *args, data)
        outputs.append(jax.tree_util.tree_map(lambda a, k=keep: _to_host(a[:k]), out))
    results, f_mean = jax.tree_util.tree_map(_concatenate, *outputs)
    columns: list[tuple[str, Any]] = [("run", np.arange(n_runs))]
    columns += list(zip(fields, run_values, strict=True))
    if x0s is not None:
        columns.append(("x0_index", np.array([r[1] for r in rows])))
    columns += [("sigma0", run_s0), ("seed", run_seeds)]
    table = _table(columns, results, f_mean)
    grid_out = {f: np.asarray(v) for f, v in zip(fields, values, strict=True)}
    if "sigma0" in swept:
        grid_out["sigma0"] = np.asarray(starts_s)
    if "x0_index" in swept:
        grid_out["x0_index"] = np.arange(len(starts_x))
    return SweepResult(table, results, grid_out, layout, size)


def _check_grid(strategy: Strategy, grid: Any) -> tuple[list[str], list[np.ndarray]]:
    """The swept field names and their values, checked against ``default_params``."""
    if grid is None:
        return [], []
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict of field -> values, got {type(grid).__name__}")
    fields, values = [], []
    for name, given in grid.items():
        if name in ("x0", "sigma0"):
            raise TypeError(f"grid field {name!r} is not a params field; sweep it with {name}s=")
        try:
            array = np.asarray(given)
        except ValueError as err:  # ragged
            raise ValueError(f"grid[{name!r}] must be a 1-D sequence of scalars") from err
        if array.ndim != 1:
            raise ValueError(
                f"grid[{name!r}] must be a 1-D sequence of scalars, got shape {array.shape}"
            )
        if array.size == 0:
            raise ValueError(f"grid[{name!r}] is empty; give at least one value")
        if array.dtype.kind not in "iuf":
            raise TypeError(f"grid[{name!r}] must hold real numbers, got dtype {array.dtype}")
        kind = jnp.result_type(float) if array.dtype.kind == "f" else np.int32
        fields.append(str(name))
        values.append(array.astype(kind))
    try:  # names and shapes (the strategy's own messages list the valid names)
        strategy.default_params(**{f: v[0] for f, v in zip(fields, values, strict=True)})
    except (TypeError, ValueError) as err:
        raise type(err)(f"sweep grid of {strategy.name}: {err}") from err
    return fields, values


def _params_at(strategy: Strategy, fields: list[str], values: list[np.ndarray], combo) -> Any:
    """One grid point's params, computed and checked concretely (joint ranges included)."""
    settings = {f: v[i] for f, v, i in zip(fields, values, combo, strict=True)}
    try:
        return strategy.default_params(**settings)
    except ValueError as err:
        shown = {k: float(v) for k, v in settings.items()}
        raise ValueError(f"sweep grid point {shown}: {err}") from err


def _check_starts(
    strategy: Strategy, x0: Any, sigma0: Any, x0s: Any, sigma0s: Any
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(k, n)`` start points and ``(k,)`` step sizes (paired), and which were swept."""
    n, swept = strategy.num_dims, []
    if x0s is not None:
        xs = np.asarray(x0s)
        if xs.ndim != 2 or xs.shape[1] != n or xs.shape[0] == 0:
            raise ValueError(f"x0s must have shape (k, {n}) with k >= 1, got {xs.shape}")
        for row in xs:
            check_x0_vector(row, n, "sweep")
        swept.append("x0_index")
    else:
        if x0 is None:
            raise ValueError("pass x0 (one start point) or x0s (several)")
        check_x0_vector(x0, n, "sweep")
        xs = np.asarray(x0)[None]
    dtype = state_dtype(xs)
    if sigma0s is not None:
        ss = np.asarray(sigma0s)
        if ss.ndim != 1 or ss.size == 0:
            raise ValueError(f"sigma0s must have shape (k,) with k >= 1, got {ss.shape}")
        for s in ss:
            check_sigma0(s, dtype)
        swept.append("sigma0")
    else:
        if sigma0 is None:
            raise ValueError("pass sigma0 (one step size) or sigma0s (several)")
        check_sigma0(sigma0, dtype)
        ss = np.asarray([sigma0])
    if x0s is not None and sigma0s is not None and len(xs) != len(ss):
        raise ValueError(
            f"x0s and sigma0s are paired (run i starts at x0s[i] with sigma0s[i]) and must "
            f"have the same length, got {len(xs)} and {len(ss)}"
        )
    k = max(len(xs), len(ss))
    xs = np.broadcast_to(xs.astype(dtype), (k, n))
    return xs, np.broadcast_to(ss.astype(dtype), (k,)), swept


def _check_seeds(seeds: Any) -> np.ndarray:
    """The seeds: ``range(k)`` for a count, else the given ints in ``[0, 2**31)``."""
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        return np.arange(check_int("seeds", seeds, 1), dtype=np.int32)
    array = np.asarray(seeds)
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        raise ValueError(
            f"seeds must be a count >= 1 or a non-empty sequence of ints, got {seeds!r}"
        )
    if array.min() < 0 or array.max() >= 2**31:
        raise ValueError(f"seeds must be in [0, 2**31), got {seeds!r}")
    return array.astype(np.int32)


def _batch_size(
    setup: _Setup, n_runs: int, batch_size: Any, memory_budget: Any, args: tuple[Any, ...]
) -> int:
    """Runs per compiled call: `batch_size`, or what `memory_budget` bytes hold."""
    if batch_size is not None and memory_budget is not None:
        raise ValueError("pass batch_size= or memory_budget=, not both")
    if batch_size is not None:
        return min(check_int("batch_size", batch_size, 1), n_runs)
    if memory_budget is None:
        return n_runs
    budget = check_int("memory_budget", memory_budget, 1)
    per_run = _run_bytes(setup, *args)
    if budget < per_run:
        raise ValueError(f"memory_budget={budget} bytes is less than one run needs (~{per_run})")
    return min(budget // per_run, n_runs)


@_SWEPT
def run_bytes(
    strategy: Strategy,
    fn: Callable[..., Any],
    x0: Any,
    sigma0: Any,
    params: Any = None,
    options: StopOptions | dict[str, Any] | None = None,
    *,
    problem: ProblemKeywords,
    evaluation: EvaluationKeywords,
    recording: RecordingKeywords,
    **minimize_keywords: Any,
) -> int:
    """Estimated bytes one run takes in a batch of `sweep` (what ``memory_budget`` divides).

    Twice the run's output (final state, best point, stop flags, history: its
    ``jax.eval_shape``, nothing is computed), for the loop's carry and the stacked result,
    plus one population. The objective's own temporaries are not known and not counted.
    Arguments as for `evojax_cma.minimize` (``history=`` included), less the key.
    """
    params = strategy.default_params() if params is None else params
    data = minimize_keywords.pop("data", None)
    groups = (problem, evaluation, recording)
    args = (np.int32(0), np.asarray(x0), np.asarray(sigma0, np.asarray(x0).dtype), params, data)
    return _run_bytes(_setup(strategy, fn, options, groups, minimize_keywords), *args)


def _setup(
    strategy: Strategy, fn: Any, options: Any, groups: tuple[Any, ...], others: dict[str, Any]
) -> _Setup:
    """The `_Setup` of runs with these keyword groups and other `minimize` keywords."""
    problem, evaluation, recording = groups
    keywords = {**keyword_items(problem), **keyword_items(evaluation), **others}
    keywords["history"] = recording.history
    return _Setup(strategy, fn, options, tuple(sorted(keywords.items())))


def _run_bytes(setup: _Setup, seed: Any, x0: Any, sigma0: Any, params: Any, data: Any) -> int:
    out = jax.eval_shape(partial(_run_one, setup), seed, x0, sigma0, params, data)
    size = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(out))
    strategy = setup.strategy
    return int(2 * size + strategy.popsize * strategy.num_dims * np.dtype(x0.dtype).itemsize)


def _to_host(a: Any) -> Any:
    return a if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else np.asarray(a)


def _concatenate(*parts: Any) -> Any:
    if jnp.issubdtype(parts[0].dtype, jax.dtypes.prng_key):
        return jnp.concatenate(parts)
    return np.concatenate(parts)


def _table(columns: list[tuple[str, Any]], results: RunResult, f_mean: Any) -> np.ndarray:
    """The tidy table: the settings' `columns`, then each run's outcome."""
    reasons = stop_reasons(results.stop_flags.reshape(len(f_mean), -1))
    columns = [
        *columns,
        ("best_f", results.best_f),
        ("f_mean", f_mean),
        ("evals", results.state.evals),
        ("generations", results.state.generation),
        ("stop", np.array([",".join(r) for r in reasons])),
    ]
    arrays = [(name, np.asarray(v)) for name, v in columns]
    table = np.empty(len(f_mean), [(name, v.dtype) for name, v in arrays])
    for name, v in arrays:
        table[name] = v
    return table


__all__ = ["LAYOUTS", "SweepResult", "run_bytes", "sweep"]
