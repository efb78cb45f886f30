r"""Encodings between the search space (genotype) and the user's parameters (phenotype).

The strategy samples and adapts genotypes; the objective sees ``decode(genotype)``. This is
the geno-/phenotype split of pycma (``transformation``, ``ScaleCoordinates``,
``BoundTransform``) and of Hansen's advice on encoding variables ("CMA-ES source code"
page: scale each variable so that a common σ fits, use a log scale for positive variables
spanning decades). Encodings compose with `evojax_cma.chain`; ``encode`` maps an ``x0``
given as a phenotype into the search space.

* `scaling`: ``x = offset + scale * y``, pycma's ``ScaleCoordinates`` (and the effect of
  per-coordinate ``CMA_stds``).
* `log_scale`: ``x = exp(y)`` on chosen coordinates, for positive parameters.
* `bound_transform`: pycma's ``BoundTransform`` (``BoxConstraintsLinQuadTransformation``):
  identity in the interior of ``[lower, upper]``, quadratic near the bounds, periodic
  (mirrored) outside, so every decoded point lies in the box.
* `clip_to_box`: the projection that pycma's ``BoundPenalty`` evaluates at
  (`evojax_cma.transforms.bound_penalty`).

Each is a frozen dataclass of Python floats and tuples (a scalar setting is a 1-tuple
broadcast over the coordinates), so equal encodings compare equal and never recompile.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core.validation import is_concrete
from evojax_cma.transforms.base import Transform

Values = tuple[float, ...]


def _values(name: str, value: Any) -> Values:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number or a vector of them, got {value!r}") from err
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a vector, got shape {arr.shape}")
    return tuple(float(v) for v in np.atleast_1d(arr))


def _check_length(name: str, values: tuple, num_dims: int) -> None:
    if len(values) not in (1, num_dims):
        raise ValueError(
            f"{name} must be a scalar or have shape ({num_dims},) for a {num_dims}-dimensional "
            f"problem, got shape ({len(values)},)"
        )


def _like(values: tuple, y: Array) -> Array:
    """Constants (1 or n of them) broadcast to the shape and dtype of `y`."""
    arr = jnp.asarray(values[0] if len(values) == 1 else values, y.dtype)
    return jnp.broadcast_to(arr, y.shape)


@dataclasses.dataclass(frozen=True)
class Scaling(Transform):
    """``phenotype = offset + scale * genotype`` coordinate-wise; see `scaling`."""

    scale: Values
    offset: Values

    def check(self, num_dims: int) -> None:
        """Scale and offset must have 1 or ``n`` entries."""
        _check_length("scale", self.scale, num_dims)
        _check_length("offset", self.offset, num_dims)

    def check_dtype(self, dtype: Any) -> None:
        """Scale (and its inverse, used by ``encode``) and offset must be normal numbers there.

        Raises:
          ValueError: e.g. ``scaling(1e-300)`` for a float32 run (the scale would be 0).
        """
        info = np.finfo(np.dtype(dtype))
        scale = np.abs(np.asarray(self.scale))
        top = float(min(info.max, 1 / info.tiny))
        if np.any(scale < info.tiny) or np.any(scale > top):
            raise ValueError(
                f"scale must lie in [{float(info.tiny):.3g}, {top:.3g}] "
                f"in magnitude for a {np.dtype(dtype).name} run (it and 1/scale must be normal "
                f"numbers), got {self.scale}"
            )
        if np.any(np.abs(np.asarray(self.offset)) > info.max):
            raise ValueError(f"offset must be finite in {np.dtype(dtype).name}, got {self.offset}")

    def decode(self, y: Array) -> Array:
        """Genotype to phenotype."""
        return _like(self.offset, y) + _like(self.scale, y) * y

    def encode(self, x: Array) -> Array:
        """Phenotype to genotype."""
        x = jnp.asarray(x)
        return (x - _like(self.offset, x)) / _like(self.scale, x)


def scaling(scale: Any, offset: Any = 0.0) -> Scaling:
    """``phenotype = offset + scale * genotype`` coordinate-wise (pycma's ``ScaleCoordinates``).

    Args:
      scale: scalar or ``(n,)``, nonzero and finite: the phenotype change of a unit step
        of the search space (choose it so that one σ fits all coordinates).
      offset: scalar or ``(n,)``, finite: the phenotype of the genotype 0.

    Raises:
      ValueError: a zero or non-finite scale, a non-finite offset, a matrix.
    """
    scale_v, offset_v = _values("scale", scale), _values("offset", offset)
    if not all(np.isfinite(scale_v)) or any(v == 0 for v in scale_v):
        raise ValueError(f"scale must be finite and nonzero, got {scale}")
    if not all(np.isfinite(offset_v)):
        raise ValueError(f"offset must be finite, got {offset}")
    return Scaling(scale_v, offset_v)


@dataclasses.dataclass(frozen=True)
class LogScale(Transform):
    """``phenotype = exp(genotype)`` where ``mask`` is true; see `log_scale`."""

    mask: tuple[bool, ...]

    def check(self, num_dims: int) -> None:
        """The mask must have 1 or ``n`` entries."""
        _check_length("mask", self.mask, num_dims)

    def _mask(self, y: Array) -> Array:
        m = jnp.asarray(self.mask[0] if len(self.mask) == 1 else self.mask, bool)
        return jnp.broadcast_to(m, y.shape)

    def decode(self, y: Array) -> Array:
        """Genotype to phenotype."""
        return jnp.where(self._mask(y), jnp.exp(y), y)

    def encode(self, x: Array) -> Array:
        """Phenotype to genotype; the masked entries must be positive.

        Raises:
          ValueError: a concrete `x` with an entry <= 0 under the mask.
        """
        x = jnp.asarray(x)
        m = self._mask(x)
        if is_concrete(x) and bool(jnp.any(m & ~(x > 0))):
            bad = np.nonzero(np.asarray(m & ~(x > 0)))[-1].tolist()
            raise ValueError(
                f"log_scale needs positive values in its coordinates, got x0 <= 0 (or NaN) "
                f"in coordinates {bad}"
            )
        return jnp.where(m, jnp.log(jnp.where(m, x, 1.0)), x)


def log_scale(mask: Any = True) -> LogScale:
    """``phenotype = exp(genotype)`` where `mask` is true, identity elsewhere.

    Args:
      mask: bool scalar or ``(n,)``: the coordinates that are positive and span decades
        (learning rates, regularisation strengths). ``x0`` must be positive there.
    """
    arr = np.asarray(mask)
    if arr.ndim > 1 or arr.dtype != bool:
        raise ValueError(f"mask must be a bool scalar or vector, got {mask!r}")
    return LogScale(tuple(bool(v) for v in np.atleast_1d(arr)))


def check_bounds(lower: Any, upper: Any, num_dims: int | None = None) -> tuple[Values, Values]:
    """Validate box bounds: scalars or ``(n,)`` vectors, ±inf allowed, ``lower < upper``.

    Returns:
      ``(lower, upper)`` as tuples of floats (1 or n entries each).

    Raises:
      ValueError: NaN bounds, a wrong shape, or ``lower >= upper`` somewhere.
    """
    lo, hi = _values("lower bound", lower), _values("upper bound", upper)
    for name, b in (("lower", lo), ("upper", hi)):
        if any(np.isnan(b)):
            raise ValueError(f"{name} bound must not be NaN, got {b}")
        if num_dims is not None:
            _check_length(f"{name} bound", b, num_dims)
    if len(lo) != len(hi) and 1 not in (len(lo), len(hi)):
        raise ValueError(f"bounds of different lengths: {len(lo)} and {len(hi)}")
    if np.any(np.asarray(lo) >= np.asarray(hi)):
        raise ValueError(f"lower bounds must be < upper bounds, got lower={lo}, upper={hi}")
    return lo, hi


def _margin(bound: np.ndarray, width: np.ndarray) -> np.ndarray:
    # pycma's margin_width2: max(1, |b|) / 20, at most half the interval; 1 for an inf bound
    with np.errstate(invalid="ignore"):
        margin = np.minimum(width / 2.0, np.maximum(1.0, np.abs(bound)) / 20.0)
    return np.where(np.isfinite(bound), margin, 1.0)


MIN_BOX_ULPS = 64
"""The least width of a finite box, in spacings (ulps) of the run's dtype at its bounds."""


@dataclasses.dataclass(frozen=True)
class Box(Transform):
    """A transformation whose decoded points lie in ``[lower, upper]``."""

    lower: Values
    upper: Values

    def check(self, num_dims: int) -> None:
        """The bounds must have 1 or ``n`` entries."""
        check_bounds(self.lower, self.upper, num_dims)

    def check_dtype(self, dtype: Any) -> None:
        """The box must be resolvable in `dtype`: at least `MIN_BOX_ULPS` spacings wide.

        Raises:
          ValueError: a bound that overflows, or a box too narrow for the dtype (e.g.
            ``(1, 1 + 1e-10)`` in float32, where both bounds round to 1).
        """
        dt = np.dtype(dtype)
        lo, hi = np.broadcast_arrays(np.asarray(self.lower), np.asarray(self.upper))
        with np.errstate(over="ignore"):
            lo_d, hi_d = lo.astype(dt), hi.astype(dt)
        for name, b, b_d in (("lower", lo, lo_d), ("upper", hi, hi_d)):
            if np.any(np.isfinite(b) & ~np.isfinite(b_d)):
                raise ValueError(f"{name} bound {b.tolist()} is not finite in {dt.name}")
        both = np.isfinite(lo_d) & np.isfinite(hi_d)
        with np.errstate(invalid="ignore", over="ignore"):
            ulp = np.spacing(np.maximum(np.abs(lo_d), np.abs(hi_d)))
            narrow = both & ~(hi_d.astype(np.float64) - lo_d >= MIN_BOX_ULPS * ulp)
        if np.any(narrow):
            i = int(np.nonzero(narrow)[0][0])
            raise ValueError(
                f"the box [{float(lo[i])!r}, {float(hi[i])!r}] (coordinate {i}) is narrower "
                f"than {MIN_BOX_ULPS} spacings of {dt.name} at its bounds; {dt.name} cannot "
                "resolve points in it: "
                "shift and rescale the variable (evojax_cma.scaling) or run in float64"
            )


@dataclasses.dataclass(frozen=True)
class BoundTransform(Box):
    """Pycma's ``BoundTransform`` map into ``[lower, upper]``; see `bound_transform`."""

    def _constants(self, y: Array) -> tuple[Array, ...]:
        lb, ub = np.broadcast_arrays(np.asarray(self.lower), np.asarray(self.upper))
        width = ub - lb
        return tuple(_like(tuple(v), y) for v in (lb, ub, _margin(lb, width), _margin(ub, width)))

    def decode(self, y: Array) -> Array:
        """Genotype to a phenotype in the box."""
        lo, hi, a_l, a_u = self._constants(y)
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
        # the map lies in the box; the clip only removes rounding (float32, huge y)
        return jnp.clip(y, lo, hi)

    def encode(self, x: Array) -> Array:
        """A genotype decoding to `x` (clipped into the box first)."""
        x = jnp.asarray(x)
        lo, hi, a_l, a_u = self._constants(x)
        x = jnp.clip(x, lo, hi)
        low = jnp.where(
            x < lo + a_l, lo - a_l + 2.0 * jnp.sqrt(jnp.maximum(a_l * (x - lo), 0.0)), x
        )
        return jnp.where(
            x > hi - a_u, hi + a_u - 2.0 * jnp.sqrt(jnp.maximum(a_u * (hi - x), 0.0)), low
        )


def bound_transform(lower: Any, upper: Any) -> BoundTransform:
    """Pycma's ``BoundTransform``: a C^1 piecewise linear/quadratic map into the box.

    With margins ``al = min((u-l)/2, max(1,|l|)/20)`` (same for ``au``), ``decode`` is the
    identity on ``[l + al, u - au]``, quadratic on ``[l - al, l + al]`` and
    ``[u - au, u + au]``, and periodic with period ``2 (u - l + al + au)`` beyond, so
    that every decoded point lies in ``[l, u]`` (an infinite bound leaves that side free).

    Args:
      lower: scalar or ``(n,)``; ``-inf`` for none.
      upper: scalar or ``(n,)``, ``> lower``; ``+inf`` for none.
    """
    return BoundTransform(*check_bounds(lower, upper))


@dataclasses.dataclass(frozen=True)
class ClipToBox(Box):
    """Projection onto ``[lower, upper]`` (the repair of pycma's ``BoundPenalty``)."""

    def decode(self, y: Array) -> Array:
        """Genotype clipped into the box."""
        return jnp.clip(y, _like(self.lower, y), _like(self.upper, y))

    def encode(self, x: Array) -> Array:
        """The same projection."""
        return self.decode(jnp.asarray(x))


def clip_to_box(lower: Any, upper: Any) -> ClipToBox:
    """The projection onto the box ``[lower, upper]``."""
    return ClipToBox(*check_bounds(lower, upper))


def warn_if_outside(x0: Any, lower: Values, upper: Values) -> None:
    """Warn, as pycma does, when a concrete `x0` lies outside the box (it is repaired)."""
    x0 = np.asarray(x0)
    outside = np.nonzero((x0 < np.asarray(lower)) | (x0 > np.asarray(upper)))[0]
    if outside.size:
        warnings.warn(
            f"x0 is outside the bounds in coordinates {outside.tolist()}; it is moved into the box",
            UserWarning,
            stacklevel=4,
        )


__all__ = [
    "MIN_BOX_ULPS",
    "BoundTransform",
    "Box",
    "ClipToBox",
    "LogScale",
    "Scaling",
    "bound_transform",
    "check_bounds",
    "clip_to_box",
    "log_scale",
    "scaling",
    "warn_if_outside",
]
