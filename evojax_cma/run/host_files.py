"""`evojax_cma.fmin`'s checkpoint files: an `FminCheckpoint` as a NumPy ``.npz``.

``fmin(..., checkpoint=path, checkpoint_every=k)`` writes, every ``k`` generations
(counted over all runs), the same `FminCheckpoint` that an `FminError` carries: the
state before the next generation, the transformations' states, the keys, the restart
schedule, the best point and the history. ``fmin(..., resume=path)`` with the same
settings continues from it, exactly as from ``err.resume``: with a deterministic
objective the run ends as the uninterrupted one would.

The file is written with `evojax_cma.checkpoint` (no pickle; write then rename, so a
complete checkpoint is never replaced by a partial one). The settings of the call are
stored as text fingerprints and compared on resume: a file of another dimension,
strategy, step size, options or restart schedule gives a `ValueError` that names each
setting that differs; a truncated file a `ValueError` too.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np

from evojax_cma import checkpoint as ckpt
from evojax_cma.core.types import Strategy
from evojax_cma.run.host_resume import FminCheckpoint, RunCheckpoint

DRIVER = "fmin"


def is_path(value: Any) -> bool:
    """Whether a ``resume=``/``checkpoint=`` value names a file."""
    return isinstance(value, str | os.PathLike)


def fingerprint(settings: dict[str, Any]) -> dict[str, str]:
    """The settings of an `fmin` call as text, for the checkpoint's metadata."""
    out = {}
    for name, value in settings.items():
        if isinstance(value, Strategy):
            value = (value.name, value.num_dims, value.popsize, value.chunk_size, value.options)
        elif name == "params" and value is not None:
            leaves = jax.tree_util.tree_leaves(value)
            value = hashlib.sha256(b"".join(np.asarray(v).tobytes() for v in leaves)).hexdigest()
        out[f"setting {name}"] = repr(value)
    return out


def save(path: Any, checkpoint: FminCheckpoint) -> None:
    """Write `checkpoint` (a run in progress) to `path`."""
    assert checkpoint.run is not None
    tree = dict(
        key=checkpoint.key,
        schedule=checkpoint.schedule,
        sigma_factor=np.asarray(float(checkpoint.sigma_factor), np.float64),
        maxiter_cap=np.asarray(float(checkpoint.maxiter_cap), np.float64),
        best=checkpoint.best,
        history=np.asarray(checkpoint.history, np.float64).reshape(-1, 5),
        run=checkpoint.run,
        recorded=checkpoint.recorded,
    )
    metadata = dict(
        driver=DRIVER,
        n=int(checkpoint.settings["n"]),
        num_constraints=int(checkpoint.settings["num_constraints"]),
        popsize=int(checkpoint.schedule.popsize),
        generation=len(checkpoint.history),
        **fingerprint(checkpoint.settings),
    )
    ckpt.save(path, tree, metadata=metadata)


def read_dimension(path: Any) -> tuple[int, int, int]:
    """``(n, popsize of the run in progress, number of constraints)`` of a file.

    Raises:
      ValueError: not an `fmin` checkpoint (or truncated, corrupted).
    """
    meta = ckpt.load_metadata(path)
    if meta.get("driver") != DRIVER:
        raise ValueError(f"{path} is not a checkpoint of fmin (driver {meta.get('driver')!r})")
    return int(meta["n"]), int(meta["popsize"]), int(meta["num_constraints"])


def load(path: Any, settings: dict[str, Any], like: FminCheckpoint) -> FminCheckpoint:
    """The `FminCheckpoint` in `path`, for a call with `settings`.

    Args:
      path: a file written by `save`.
      settings: the settings of the resuming call (compared with the stored ones).
      like: an `FminCheckpoint` of the same structure (a fresh run of the stored
        population size; ``history`` is ignored).

    Raises:
      ValueError: a setting differs (each one is named), or the file is truncated or
        holds another structure.
    """
    rows = ckpt.load_metadata(path)["generation"]
    assert like.run is not None
    template = dict(
        key=like.key,
        schedule=like.schedule,
        sigma_factor=np.zeros((), np.float64),
        maxiter_cap=np.zeros((), np.float64),
        best=like.best,
        history=np.zeros((rows, 5), np.float64),
        run=like.run,
        recorded=like.recorded,
    )
    expect = dict(driver=DRIVER, **fingerprint(settings))
    tree = ckpt.load(path, template, expect=expect)
    run = RunCheckpoint(*tree["run"])
    return FminCheckpoint(
        settings=settings,
        key=tree["key"],
        schedule=tree["schedule"],
        sigma_factor=float(tree["sigma_factor"]),
        maxiter_cap=float(tree["maxiter_cap"]),
        best=tree["best"],
        history=tuple(tuple(float(v) for v in row) for row in np.asarray(tree["history"])),
        run=run,
        last_state=run.state,
        recorded=tree["recorded"],
    )


__all__ = ["fingerprint", "is_path", "load", "read_dimension", "save"]
