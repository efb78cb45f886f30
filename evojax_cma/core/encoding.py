r"""Encodings between the search space (genotype) and the user's parameters (phenotype).

The strategy samples and adapts genotypes; the objective sees ``decode(genotype)``. This is
the geno-/phenotype split of pycma (``transformation``, ``ScaleCoordinates``,
``BoundTransform``) and of Hansen's advice on encoding variables ("CMA-ES source code"
page: scale each variable so that a common σ fits, use a log scale for positive variables
spanning decades). Encodings compose with `chain`; ``encode`` maps an ``x0`` given in
phenotype into the search space.

* `scaling`: ``x = offset + scale * y``, pycma's ``ScaleCoordinates`` (and the effect of
  per-coordinate ``CMA_stds``).
* `log_scale`: ``x = exp(y)`` on chosen coordinates, for positive parameters.
* `bound_transform`: pycma's ``BoundTransform`` (``BoxConstraintsLinQuadTransformation``):
  identity in the interior of ``[lower, upper]``, quadratic near the bounds, periodic
  (mirrored) outside, so every decoded point lies in the box.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array


class Encoding(NamedTuple):
    """A map from genotype to phenotype and back (both act on the last axis).

    Attributes:
      decode: ``(..., n) -> (..., n)``, genotype to phenotype (what the objective sees).
      encode: ``(n,) -> (n,)``, phenotype to genotype, used for ``x0`` (exact where
        ``decode`` is invertible).
      name: a short description.
    """

    decode: Callable[[Array], Array]
    encode: Callable[[Array], Array]
    name: str


def _vector_or_scalar(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a vector, got shape {arr.shape}")
    return arr


def _like(value: Any, y: Array) -> Array:
    """A constant (scalar or ``(n,)``) broadcast to the shape and dtype of `y`."""
    return jnp.broadcast_to(jnp.asarray(value, y.dtype), y.shape)


def scaling(scale: Any, offset: Any = 0.0) -> Encoding:
    """``phenotype = offset + scale * genotype`` coordinate-wise (pycma's ``ScaleCoordinates``).

    Args:
      scale: scalar or ``(n,)``, nonzero and finite: the phenotype change of a unit step
        of the search space (choose it so that one σ fits all coordinates).
      offset: scalar or ``(n,)``, finite: the phenotype of the genotype 0.
    """
    scale, offset = _vector_or_scalar("scale", scale), _vector_or_scalar("offset", offset)
    if not np.all(np.isfinite(scale)) or np.any(scale == 0):
        raise ValueError(f"scale must be finite and nonzero, got {scale}")
    if not np.all(np.isfinite(offset)):
        raise ValueError(f"offset must be finite, got {offset}")

    def decode(y: Array) -> Array:
        """Genotype to phenotype."""
        return _like(offset, y) + _like(scale, y) * y

    def encode(x: Array) -> Array:
        """Phenotype to genotype."""
        x = jnp.asarray(x)
        return (x - _like(offset, x)) / _like(scale, x)

    return Encoding(decode, encode, "scaling")


def log_scale(mask: Any = True) -> Encoding:
    """``phenotype = exp(genotype)`` where `mask` is true, identity elsewhere.

    Args:
      mask: bool scalar or ``(n,)``: the coordinates that are positive and span decades
        (learning rates, regularisation strengths). ``encode`` needs them positive.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim > 1:
        raise ValueError(f"mask must be a bool scalar or vector, got shape {mask.shape}")

    def decode(y: Array) -> Array:
        """Genotype to phenotype."""
        return jnp.where(jnp.broadcast_to(mask, y.shape), jnp.exp(y), y)

    def encode(x: Array) -> Array:
        """Phenotype to genotype (positive entries under the mask)."""
        x = jnp.asarray(x)
        m = jnp.broadcast_to(mask, x.shape)
        return jnp.where(m, jnp.log(jnp.where(m, x, 1.0)), x)

    return Encoding(decode, encode, "log_scale")


def check_bounds(lower: Any, upper: Any, num_dims: int | None = None) -> tuple[Any, Any]:
    """Validate box bounds: scalars or ``(n,)`` vectors, ±inf allowed, ``lower < upper``.

    Returns:
      ``(lower, upper)`` as float64 NumPy arrays.

    Raises:
      ValueError: NaN bounds, a wrong shape, or ``lower >= upper`` somewhere.
    """
    lower, upper = _vector_or_scalar("lower", lower), _vector_or_scalar("upper", upper)
    for name, b in (("lower", lower), ("upper", upper)):
        if np.any(np.isnan(b)):
            raise ValueError(f"{name} bound must not be NaN, got {b}")
        if num_dims is not None and b.ndim == 1 and b.shape[0] != num_dims:
            raise ValueError(
                f"{name} bound must be a scalar or have shape ({num_dims},), got shape {b.shape}"
            )
    if np.any(lower >= upper):
        raise ValueError(f"lower bounds must be < upper bounds, got lower={lower}, upper={upper}")
    return lower, upper


def _margin(bound: np.ndarray, width: np.ndarray) -> np.ndarray:
    # pycma's margin_width2: max(1, |b|) / 20, at most half the interval; 1 for an inf bound
    with np.errstate(invalid="ignore"):
        margin = np.minimum(width / 2.0, np.maximum(1.0, np.abs(bound)) / 20.0)
    return np.where(np.isfinite(bound), margin, 1.0)


def bound_transform(lower: Any, upper: Any) -> Encoding:
    """Pycma's ``BoundTransform``: a C^1 piecewise linear/quadratic map into the box.

    With margins ``al = min((u-l)/2, max(1,|l|)/20)`` (same for ``au``), ``decode`` is the
    identity on ``[l + al, u - au]``, quadratic on ``[l - al, l + al]`` and
    ``[u - au, u + au]``, and periodic with period ``2 (u - l + al + au)`` beyond, so
    that every decoded point lies in ``[l, u]`` (an infinite bound leaves that side free).

    Args:
      lower: scalar or ``(n,)``; ``-inf`` for none.
      upper: scalar or ``(n,)``, ``> lower``; ``+inf`` for none.
    """
    lb, ub = check_bounds(lower, upper)
    width = ub - lb
    al, au = _margin(lb, width), _margin(ub, width)

    def decode(y: Array) -> Array:
        """Genotype to a phenotype in the box."""
        lo, hi, a_l, a_u = (_like(v, y) for v in (lb, ub, al, au))
        both = jnp.isfinite(lo) & jnp.isfinite(hi)
        span = jnp.where(both, hi - lo, 0.0)
        # fold far-away values into one period (only meaningful with two finite bounds)
        period = 2.0 * (span + a_l + a_u)
        start = lo - 2.0 * a_l - span / 2.0
        far = both & ((y < start) | (y > hi + 2.0 * a_u + span / 2.0))
        safe_period = jnp.where(both, period, 1.0)
        y = jnp.where(
            far, y - safe_period * jnp.floor((y - jnp.where(both, start, 0.0)) / safe_period), y
        )
        # mirror at hi + au and lo - al
        y = jnp.where(y > hi + a_u, y - 2.0 * (y - hi - a_u), y)
        y = jnp.where(y < lo - a_l, y + 2.0 * (lo - a_l - y), y)
        # quadratic pieces next to the bounds
        y = jnp.where(y < lo + a_l, lo + (y - (lo - a_l)) ** 2 / 4.0 / a_l, y)
        y = jnp.where(y > hi - a_u, hi - (y - (hi + a_u)) ** 2 / 4.0 / a_u, y)
        return y

    def encode(x: Array) -> Array:
        """A genotype decoding to `x` (clipped into the box first)."""
        x = jnp.asarray(x)
        lo, hi, a_l, a_u = (_like(v, x) for v in (lb, ub, al, au))
        x = jnp.clip(x, lo, hi)
        low = jnp.where(
            x < lo + a_l, lo - a_l + 2.0 * jnp.sqrt(jnp.maximum(a_l * (x - lo), 0.0)), x
        )
        return jnp.where(
            x > hi - a_u, hi + a_u - 2.0 * jnp.sqrt(jnp.maximum(a_u * (hi - x), 0.0)), low
        )

    return Encoding(decode, encode, "bound_transform")


def clip_encoding(lower: Any, upper: Any) -> Encoding:
    """Projection onto the box (the repair of pycma's ``BoundPenalty``)."""
    lb, ub = check_bounds(lower, upper)

    def decode(y: Array) -> Array:
        """Genotype clipped into the box."""
        return jnp.clip(y, _like(lb, y), _like(ub, y))

    return Encoding(decode, decode, "clip")


def chain(*encodings: Encoding | None) -> Encoding:
    """Compose encodings: ``chain(a, b).decode(y) == b.decode(a.decode(y))``."""
    parts = [e for e in encodings if e is not None]

    def decode(y: Array) -> Array:
        """Apply the decoders in order."""
        for e in parts:
            y = e.decode(y)
        return y

    def encode(x: Array) -> Array:
        """Apply the encoders in reverse order."""
        for e in reversed(parts):
            x = e.encode(x)
        return x

    return Encoding(decode, encode, "+".join(e.name for e in parts) or "identity")


def warn_if_outside(x0: Any, lower: Any, upper: Any) -> None:
    """Warn, as pycma does, when a concrete `x0` lies outside the box (it is repaired)."""
    x0 = np.asarray(x0)
    outside = np.nonzero((x0 < lower) | (x0 > upper))[0]
    if outside.size:
        warnings.warn(
            f"x0 is outside the bounds in coordinates {outside.tolist()}; it is moved into the box",
            UserWarning,
            stacklevel=3,
        )


__all__ = [
    "Encoding",
    "bound_transform",
    "chain",
    "check_bounds",
    "clip_encoding",
    "log_scale",
    "scaling",
    "warn_if_outside",
]
