"""Figures of a run's `evojax_cma.history.History`: pycma's four panels, and sweep heatmaps.

`plot` draws what ``cma.plot()`` shows, from a history recorded inside the compiled loop:

1. f-values: best so far, best and median of each generation (log scale of their
   distance to the best value seen, as pycma plots ``f - min(f)``, when f is not
   positive), and f at the mean where recorded;
2. the mean (object variables), one line per coordinate;
3. σ, the axis ratio and the sorted square roots of the eigenvalues of C (log scale),
   and for `open_es`/`variational` the gradient norm and the optimiser's step size;
4. the per-coordinate standard deviations σ·sqrt(C_ii) (log scale).

A restart schedule (`evojax_cma.minimize_restarts`, `evojax_cma.fmin` with restarts) is
one history; a dotted vertical line in every panel marks the first generation of each new
run (of the longest run of a batch), as pycma's plots show restarts.

A batch of runs (a history recorded under ``vmap``) is drawn as the median over runs with
a band between two quantiles for the scalar series, and the median per coordinate for the
others. `heatmap` draws a final value over two swept fields.

matplotlib is an optional dependency (``pip install evojax_cma[plots]``); the figures are
built with its object API and the Agg canvas, so no GUI and no global pyplot state are
involved, and a PNG is written when a path is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evojax_cma.history import History, rows


def _matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised without the extra only
        raise ImportError("plotting needs matplotlib: pip install 'evojax_cma[plots]'") from exc
    return Figure, FigureCanvasAgg


def _band(values: np.ndarray, quantiles: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Median and quantile band over the leading (run) axis of ``(runs, K)`` values."""
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            return (
                np.nanmedian(values, axis=0),
                np.nanquantile(values, quantiles[0], axis=0),
                np.nanquantile(values, quantiles[1], axis=0),
            )


def plot(
    history: History,
    path: Any = None,
    *,
    quantiles: tuple[float, float] = (0.25, 0.75),
    title: str | None = None,
) -> Any:
    """Draw pycma's four panels of one run or a batch of runs.

    Args:
      history: a `History` (from a driver's result), possibly batched (``vmap``).
      path: where to save a PNG (optional).
      quantiles: the band drawn around the median for a batch.
      title: the figure's title.

    Returns:
      The matplotlib ``Figure`` (its axes, in order: f-values, mean, σ/axes, stds).
    """
    Figure, FigureCanvasAgg = _matplotlib()
    data = rows(history)
    batch_ndim = data["generation"].ndim - 1
    batch = batch_ndim > 0
    flat = {k: v.reshape((-1,) + v.shape[batch_ndim:]) for k, v in data.items()}
    longest = int(np.argmax(np.sum(flat["generation"] >= 0, axis=1)))
    x = flat["generation"][longest].astype(float)
    keep = x >= 0
    x = x[keep]

    fig = Figure(figsize=(11, 8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).ravel()
    ax_f, ax_x, ax_s, ax_d = axes

    def series(name: str) -> np.ndarray:
        return flat[name][:, keep]

    best = series("f_best_so_far")
    f_min = np.nanmin(best) if np.isfinite(best).any() else 0.0
    shift = 0.0 if f_min > 0 else f_min - 1e-300
    for name, label, style in (
        ("f_best_so_far", "best so far", "b-"),
        ("f_best_generation", "best of generation", "c-"),
        ("f_median_generation", "median of generation", "y-"),
        ("f_mean", "f(mean)", "k:"),
    ):
        values = series(name) - shift
        if not np.isfinite(values).any():
            continue
        median, lo, hi = _band(values, quantiles)
        ax_f.plot(x, median, style, label=label)
        if batch:
            ax_f.fill_between(x, lo, hi, alpha=0.2, color=style[0])
    ax_f.set_yscale("log")
    ax_f.set_title("f-value" if shift == 0 else f"f - {f_min:.3g}")
    ax_f.legend(fontsize="small")

    ax_x.plot(x, np.nanmedian(series("mean"), axis=0))
    ax_x.set_title("mean (object variables)")

    scalars = (("sigma", "sigma", "g-"), ("axis_ratio", "axis ratio", "r-"))
    scalars += (("grad_norm", "gradient norm", "m-"), ("step_size", "step size", "k-"))
    for name, label, style in scalars:
        if not np.isfinite(series(name)).any():
            continue
        median, lo, hi = _band(series(name), quantiles)
        ax_s.plot(x, median, style, label=label)
        if batch:
            ax_s.fill_between(x, lo, hi, alpha=0.2, color=style[0])
    ax_s.plot(x, np.nanmedian(series("axis_lengths"), axis=0), "-", lw=0.6, color="0.4")
    ax_s.set_yscale("log")
    ax_s.set_title("sigma, axis ratio, sqrt(eigenvalues of C)")
    ax_s.legend(fontsize="small")

    ax_d.plot(x, np.nanmedian(series("stds"), axis=0))
    ax_d.set_yscale("log")
    ax_d.set_title("standard deviations in all coordinates")

    runs = flat["run"][longest][keep]
    starts = x[1:][np.diff(runs) != 0]  # first generation of each new run
    for ax in axes:
        for start in starts:
            ax.axvline(start, color="0.5", ls=":", lw=0.8)
        ax.set_xlabel("generation")
        ax.grid(True, which="major", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=80)
    return fig


def heatmap(
    values: Any,
    x_values: Any,
    y_values: Any,
    *,
    x_label: str,
    y_label: str,
    value_label: str = "final f",
    log: bool = True,
    path: Any = None,
) -> Any:
    """A final value over two swept fields (e.g. learning rate × σ₀), median over seeds.

    Args:
      values: ``(len(y_values), len(x_values))`` or ``(..., ny, nx)`` with leading seed
        axes (their median is drawn).
      x_values: the settings along the x axis.
      y_values: the settings along the y axis.
      x_label: the x field's name.
      y_label: the y field's name.
      value_label: the colour bar's label.
      log: colour on a log10 scale (of the values' distance to their minimum when that
        is not positive).
      path: where to save a PNG (optional).

    Returns:
      The matplotlib ``Figure``.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    v = np.asarray(values, dtype=float)
    x_values, y_values = np.asarray(x_values), np.asarray(y_values)
    if v.shape[-2:] != (y_values.size, x_values.size):
        raise ValueError(
            f"values must end in shape ({y_values.size}, {x_values.size}) (y by x), got {v.shape}"
        )
    if v.ndim > 2:
        v = np.nanmedian(v.reshape((-1,) + v.shape[-2:]), axis=0)
    shown = v
    if log:
        low = np.nanmin(v)
        shown = np.log10(v if low > 0 else v - low + 1e-300)
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(shown, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(x_values.size), [f"{t:.3g}" for t in x_values])
    ax.set_yticks(range(y_values.size), [f"{t:.3g}" for t in y_values])
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    fig.colorbar(image, ax=ax, label=f"log10 {value_label}" if log else value_label)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=80)
    return fig


__all__ = ["heatmap", "plot"]
