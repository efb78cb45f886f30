"""Save and resume any pytree of a run (state, params, key, history) as NumPy ``.npz``.

No pickle, on save or load: every leaf is stored as an array under its tree path, with a
JSON header of the tree's structure, each leaf's shape and dtype, a format version and
the caller's metadata; ``np.load(..., allow_pickle=False)`` reads it back. Typed PRNG
keys (``jax.random.key``) are stored as their key data with the key implementation, and
come back as keys.

`load` needs a template of the same structure (``like=``: for example the ``init`` state
of the same strategy and dimension): a checkpoint of another strategy, of another
dimension or dtype, or a truncated or corrupted file gives a `ValueError` that says what
differs, before anything is returned. `save` writes a temporary file in the same folder
and renames it over the target only once it is complete, so an existing checkpoint is
never left half-written.

Resuming is exact: the arrays are stored bit for bit, so a run stopped at generation g
and resumed from its checkpoint continues exactly as the uninterrupted run (tested for
every strategy).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "evojax_cma.checkpoint/1"
_HEADER = "__header__"


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _describe(tree: Any) -> tuple[list[str], list[Any], Any]:
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [jax.tree_util.keystr(path) for path, _ in paths_and_leaves]
    return paths, [leaf for _, leaf in paths_and_leaves], treedef


def save(path: Any, tree: Any, *, metadata: dict[str, Any] | None = None) -> pathlib.Path:
    """Write `tree` (any pytree of arrays, keys and scalars) to `path` (``.npz``).

    Args:
      path: the file to write (its folder must exist); replaced atomically.
      tree: e.g. ``{"state": state, "key": key, "history": history}``.
      metadata: JSON-serialisable facts to keep beside it (strategy name, generation,
        ...), returned by `load_metadata`.

    Returns:
      The path written.

    Raises:
      TypeError: a leaf that is not an array or number, metadata that is not JSON.
    """
    path = pathlib.Path(path)
    paths, leaves, treedef = _describe(tree)
    arrays, leaf_info = {}, []
    for i, (name, leaf) in enumerate(zip(paths, leaves, strict=True)):
        info: dict[str, Any] = {"path": name}
        if _is_key(leaf):
            info["key_impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        array = np.asarray(leaf)
        if array.dtype == object:
            raise TypeError(f"leaf {name} is not an array or number: {type(leaf).__name__}")
        info.update(shape=list(array.shape), dtype=str(array.dtype))
        arrays[f"leaf_{i}"] = array
        leaf_info.append(info)
    header = {
        "format": FORMAT,
        "treedef": str(treedef),
        "leaves": leaf_info,
        "metadata": metadata or {},
    }
    try:
        encoded = json.dumps(header)
    except TypeError as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from exc
    arrays[_HEADER] = np.frombuffer(encoded.encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read(path: Any, arrays: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            header = json.loads(bytes(data[_HEADER]).decode())
            leaves = {k: data[k] for k in data.files if k != _HEADER} if arrays else {}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as exc:
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated or corrupted?): {exc}"
        ) from exc
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} has format {header.get('format')!r}, expected {FORMAT!r}")
    return header, leaves


def load_metadata(path: Any) -> dict[str, Any]:
    """The metadata stored with a checkpoint (without loading its arrays)."""
    return _read(path, arrays=False)[0]["metadata"]


def load(path: Any, like: Any, *, expect: dict[str, Any] | None = None) -> Any:
    """Read a checkpoint written by `save` into the structure of `like`.

    Args:
      path: the ``.npz`` file.
      like: a pytree of the same structure, shapes and dtypes (e.g. a fresh ``init``
        state of the same strategy, with a key and history if they were saved).
      expect: metadata the checkpoint must have been saved with (e.g. the driver, the
        strategy's name, the restart schedule): a setting that differs is an error even
        where the arrays would fit.

    Returns:
      The saved tree, with JAX arrays (and typed keys where saved).

    Raises:
      ValueError: a truncated or corrupted file, another format, metadata that differs
        from `expect` (the message names each setting, saved and expected), or a tree
        that differs from `like` (another strategy, dimension, dtype): the message names
        the leaf.
    """
    header, data = _read(path)
    saved = header["metadata"]
    wanted = json.loads(json.dumps(expect or {}))  # compared as stored (tuples -> lists)
    differ = [k for k in wanted if saved.get(k) != wanted[k]]
    if differ:
        changes = "; ".join(f"{k}: saved {saved.get(k)!r}, expected {wanted[k]!r}" for k in differ)
        raise ValueError(f"{path} is a checkpoint of another run: {changes}")
    paths, leaves, treedef = _describe(like)
    saved_paths = [leaf["path"] for leaf in header["leaves"]]
    if header["treedef"] != str(treedef) or saved_paths != paths:
        missing = sorted(set(paths) - set(saved_paths))[:5]
        extra = sorted(set(saved_paths) - set(paths))[:5]
        raise ValueError(
            f"{path} holds another structure than expected (another strategy or settings?): "
            f"missing {missing}, unexpected {extra}; saved {header['treedef'][:200]}"
        )
    out = []
    for i, (info, want) in enumerate(zip(header["leaves"], leaves, strict=True)):
        array = data.get(f"leaf_{i}")
        if array is None:
            raise ValueError(f"{path}: leaf {info['path']} is missing (truncated or corrupted?)")
        template = jax.random.key_data(want) if _is_key(want) else np.asarray(want)
        if array.shape != template.shape or array.dtype != template.dtype:
            raise ValueError(
                f"{path}: leaf {info['path']} has shape {array.shape} and dtype {array.dtype}, "
                f"expected {template.shape} and {template.dtype} (another dimension or dtype?)"
            )
        if "key_impl" in info:
            out.append(jax.random.wrap_key_data(jnp.asarray(array), impl=info["key_impl"]))
        else:
            out.append(jnp.asarray(array))
    return jax.tree_util.tree_unflatten(treedef, out)


__all__ = ["FORMAT", "load", "load_metadata", "save"]
