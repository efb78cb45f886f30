"""Network parameters as pytrees: flat search vectors for the strategies, pytrees for the user.

Strategies search over flat vectors; people who evolve networks hold their parameters as
pytrees (a dict of arrays, a Flax ``nnx.state``/``linen`` params tree, an Equinox
module's array leaves). `param_spec` reads a template tree once and gives a `ParamSpec`,
a small hashable value (the tree structure, each leaf's shape and dtype) with

* ``ravel(tree) -> (n,)`` and ``unravel(vector) -> tree`` (dtypes restored),
* ``unravel_population((rows, n)) -> tree`` whose leaves have a leading ``rows`` axis
  (a batched pytree: one network per row, ready for ``jax.vmap``),

built from ``jax.tree_util`` and reshapes, so they work under ``jit`` and ``vmap`` and
chunk by chunk (a chunk of a population is a batched pytree of ``chunk_size`` networks).
`on_pytree` wraps an objective of a pytree as an objective of a vector; the wrapper is a
value (equal for the same function and spec), so passing it to a driver twice does not
recompile.

Leaves must be floating arrays of one dtype (the search space has one precision); an
integer or boolean leaf, mixed dtypes, an empty tree and a non-finite entry are refused
with an error naming the leaf.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core.validation import is_concrete


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """The layout of a parameter pytree: structure, leaf paths, shapes and the dtype."""

    treedef: Any
    paths: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: str

    @property
    def size(self) -> int:
        """n: the number of parameters (the search space's dimension)."""
        return sum(math.prod(s) for s in self.shapes)

    def _offsets(self) -> list[int]:
        sizes = [math.prod(s) for s in self.shapes]
        return [sum(sizes[:i]) for i in range(len(sizes) + 1)]

    def ravel(self, tree: Any) -> Array:
        """A tree of this layout as one vector ``(n,)``."""
        leaves = self.treedef.flatten_up_to(tree)
        return jnp.concatenate([jnp.ravel(jnp.asarray(leaf, self.dtype)) for leaf in leaves])

    def unravel(self, vector: Array) -> Any:
        """A vector ``(..., n)`` as a tree of this layout (leading axes kept on every leaf)."""
        vector = jnp.asarray(vector)
        lead = vector.shape[:-1]
        offsets = self._offsets()
        leaves = [
            vector[..., offsets[i] : offsets[i + 1]].reshape(lead + shape).astype(self.dtype)
            for i, shape in enumerate(self.shapes)
        ]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def unravel_population(self, population: Array) -> Any:
        """``(rows, n)`` points as a batched tree: every leaf gets a leading ``rows`` axis."""
        if np.ndim(population) != 2 or np.shape(population)[1] != self.size:
            raise ValueError(
                f"population must have shape (rows, {self.size}), got {np.shape(population)}"
            )
        return self.unravel(population)


def param_spec(params: Any) -> ParamSpec:
    """The `ParamSpec` of a template parameter tree (its values are not kept).

    Raises:
      ValueError: an empty tree, a leaf with NaN or inf (named by its path).
      TypeError: a leaf that is not a floating array (named), or leaves of mixed dtypes.
    """
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not with_paths:
        raise ValueError("params is an empty pytree: there is nothing to optimise")
    paths, shapes, dtypes = [], [], set()
    for path, leaf in with_paths:
        name = jax.tree_util.keystr(path) or "<root>"
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"params leaf {name} must be a floating array, got "
                f"{type(leaf).__name__} of dtype {dtype} (keep integer or static fields out "
                "of the tree you optimise, e.g. with equinox.partition or flax's nnx.Param)"
            )
        if is_concrete(leaf) and not bool(jnp.all(jnp.isfinite(leaf))):
            raise ValueError(f"params leaf {name} has non-finite entries")
        paths.append(name)
        shapes.append(tuple(int(d) for d in np.shape(leaf)))
        dtypes.add(str(jnp.dtype(dtype)))
    if len(dtypes) > 1:
        raise TypeError(
            f"params leaves must share one floating dtype, got {sorted(dtypes)}; cast the tree "
            "first (e.g. jax.tree.map(lambda a: a.astype(jnp.float32), params))"
        )
    return ParamSpec(treedef, tuple(paths), tuple(shapes), dtypes.pop())


@dataclasses.dataclass(frozen=True)
class OnPytree:
    """An objective of a parameter tree, called with vectors; see `on_pytree`."""

    fn: Callable[..., Any]
    spec: ParamSpec
    batched: bool = False

    def __call__(self, x: Array, *args: Any) -> Array:
        """``fn(unravel(x), *args)`` (a batched tree when `batched`)."""
        tree = self.spec.unravel_population(x) if self.batched else self.spec.unravel(x)
        return self.fn(tree, *args)


def on_pytree(fn: Callable[..., Any], spec: ParamSpec, *, batched: bool = False) -> OnPytree:
    """An objective of vectors from `fn`, an objective of trees with layout `spec`.

    Args:
      fn: ``fn(params, *args) -> scalar`` (or, with `batched`, ``fn(batched_params,
        *args) -> (rows,)`` where every leaf has a leading ``rows`` axis).
      spec: from `param_spec`.
      batched: pass whole populations as batched trees (for ``batched=True`` drivers).

    Returns:
      A callable value: equal for the same `fn` and an equal `spec`, so it is a stable
      static argument (no recompilation).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not isinstance(spec, ParamSpec):
        raise TypeError(f"spec must be a ParamSpec from param_spec, got {type(spec).__name__}")
    return OnPytree(fn, spec, bool(batched))


__all__ = ["OnPytree", "ParamSpec", "on_pytree", "param_spec"]
