"""Checks of user input that run on the host, before anything is traced.

Each check raises a `TypeError` or `ValueError` that names the argument and what was
expected. Values that are JAX tracers (inside `jit` or `vmap`) can only be checked for
shape and dtype; their values are checked where they are concrete.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from jax import tree_util
from jax.core import Tracer


def is_concrete(value: Any) -> bool:
    """True when `value` holds data on the host or device, not a tracer."""
    return not isinstance(value, Tracer)


def any_traced(*values: Any) -> bool:
    """True when some leaf of the pytrees `values` is a tracer (inside ``jit``/``vmap``)."""
    return any(not is_concrete(leaf) for leaf in tree_util.tree_leaves(values))


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return `value` as an int, requiring an integral value ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_vector(name: str, value: Any, length: int) -> None:
    """Require a real vector of shape ``(length,)`` with finite entries where concrete."""
    shape = np.shape(value)
    if shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got shape {shape}")
    dtype = getattr(value, "dtype", np.asarray(value).dtype if is_concrete(value) else None)
    if dtype is not None and not np.issubdtype(np.dtype(dtype), np.number):
        raise TypeError(f"{name} must be numeric, got dtype {dtype}")
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {dtype}")
    if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
        raise ValueError(f"{name} must be finite, got {np.asarray(value)}")


def check_positive_scalar(name: str, value: Any) -> None:
    """Require a finite scalar > 0 (checked where concrete; shape always)."""
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
    if is_concrete(value):
        v = float(np.asarray(value))
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be finite and > 0, got {v}")


def check_population(name: str, value: Any, shape: tuple[int, ...]) -> None:
    """Require an array of exactly `shape`."""
    if np.shape(value) != shape:
        raise ValueError(f"{name} must have shape {shape}, got shape {np.shape(value)}")


def check_named_tuple(params: Any, cls: type, field_shapes: dict[str, tuple]) -> Any:
    """Require `params` to be a `cls` whose named array fields have the given shapes."""
    if not isinstance(params, cls):
        raise TypeError(f"params must be a {cls.__name__}, got {type(params).__name__}")
    for field, shape in field_shapes.items():
        if np.shape(getattr(params, field)) != shape:
            raise ValueError(
                f"params.{field} must have shape {shape}, got {np.shape(getattr(params, field))}"
            )
    return params


def check_options(name: str, given: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    """Raise a `TypeError` for option names outside `allowed`."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise TypeError(f"unknown {name} {unknown}; valid names are {sorted(allowed)}")


def check_overrides(
    name: str, overrides: dict[str, Any], shapes: dict[str, tuple[int, ...] | None]
) -> None:
    """Check ``default_params(**overrides)`` before anything is traced.

    Args:
      name: what the overrides are for, e.g. ``"cma_es.default_params"``.
      overrides: the keyword arguments given.
      shapes: the valid names, each with the shape its value must have (None: any).

    Raises:
      TypeError: for a name not in `shapes`; the message lists the valid names.
      ValueError: for a value of the wrong shape, or a concrete value that is NaN (dicts
        of optimiser hyperparameters are checked entry by entry).
    """
    check_options(f"{name} override(s)", overrides, frozenset(shapes))
    for key, value in overrides.items():
        shape = shapes[key]
        if isinstance(value, dict):
            for sub, v in value.items():
                check_overrides(f"{name}({key}=...)", {sub: v}, {sub: ()})
            continue
        if shape is not None and np.shape(value) != shape:
            raise ValueError(f"{key} must have shape {shape}, got shape {np.shape(value)}")
        if is_concrete(value) and np.any(np.isnan(np.asarray(value, dtype=float))):
            raise ValueError(f"{key} must not be NaN, got {value}")
