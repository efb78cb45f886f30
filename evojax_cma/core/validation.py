"""Checks of user input that run on the host, before anything is traced.

Each check raises a `TypeError` or `ValueError` that names the argument and what was
expected. Values that are JAX tracers (inside `jit` or `vmap`) can only be checked for
shape and dtype; their values are checked where they are concrete.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util
from jax.core import Tracer


def is_concrete(value: Any) -> bool:
    """True when `value` holds data on the host or device, not a tracer."""
    return not isinstance(value, Tracer)


def as_array(value: Any, dtype: Any) -> Any:
    """`value` as an array of `dtype`: NumPy for host numbers, ``jnp.asarray`` otherwise.

    Building a params or options pytree field by field with ``jnp.asarray`` dispatches one
    conversion per field to the device (~30 µs each on CPU, a millisecond per ``minimize``
    call over two such pytrees); NumPy's is ~0.2 µs, and jitted code takes either. Traced
    values and arrays already on a device go through ``jnp.asarray``.
    """
    if isinstance(value, bool | int | float | np.ndarray | np.generic):
        return np.asarray(value, dtype)
    return jnp.asarray(value, dtype)


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
    check_real_dtype(name, value)
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


def check_real_dtype(name: str, value: Any) -> None:
    """Require a real numeric dtype (shapes and dtypes are known even under ``jit``).

    Raises:
      TypeError: a complex, string, object or boolean-free non-numeric dtype, naming `name`.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        if not is_concrete(value):
            return
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError) as err:  # ragged lists, ...
            raise TypeError(f"{name} must be a real array, got {type(value).__name__}") from err
    dtype = np.dtype(dtype) if not hasattr(dtype, "kind") else dtype
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {dtype}")
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise TypeError(f"{name} must be numeric, got dtype {dtype}")


SUPPORTED_FLOATS = ("float32", "float64")
"""The floating dtypes a state may have (eigendecompositions and ranking need them)."""


def state_dtype(x0: Any) -> np.dtype:
    """The dtype a run with start point `x0` computes in: x0's if floating, else JAX's default.

    Raises:
      TypeError: `x0` of a complex dtype, or a floating dtype other than float32/float64
        (float16 and bfloat16 lack the range and the LAPACK kernels CMA-ES needs: pass
        ``x0.astype(np.float32)``).
    """
    check_real_dtype("x0", x0)
    dtype = getattr(x0, "dtype", None)
    if dtype is None:
        dtype = np.asarray(x0).dtype
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        if dtype.name not in SUPPORTED_FLOATS:
            raise TypeError(
                f"x0 has dtype {dtype.name}; the state must be float32 or float64 "
                "(pass x0.astype(np.float32))"
            )
        return np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    return np.dtype(jnp.result_type(float))


def sigma0_limits(dtype: Any) -> tuple[float, float]:
    """``(sqrt(tiny), sqrt(max))`` of `dtype`: sigma0's square, a variance, must be normal."""
    info = np.finfo(np.dtype(dtype))
    return float(np.sqrt(info.tiny)), float(np.sqrt(info.max))


def check_sigma0(sigma0: Any, dtype: Any) -> None:
    """Require a real scalar sigma0 > 0 whose square is a normal number of `dtype`.

    Shape and dtype are always checked; the value where concrete.
    """
    if np.ndim(sigma0) != 0:
        raise ValueError(f"sigma0 must be a scalar, got shape {np.shape(sigma0)}")
    check_real_dtype("sigma0", sigma0)
    if not is_concrete(sigma0):
        return
    v = float(np.asarray(sigma0))
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"sigma0 must be finite and > 0, got {v}")
    lo, hi = sigma0_limits(dtype)
    if not lo <= v <= hi:
        raise ValueError(
            f"sigma0 must be in [{lo:.3g}, {hi:.3g}] for a {np.dtype(dtype).name} state "
            f"(its square, a variance, must be a normal {np.dtype(dtype).name}), got {v}"
        )


def check_finite_in(name: str, value: Any, dtype: Any) -> None:
    """Require a concrete `value` to stay finite when cast to `dtype` (e.g. 1e39 in float32)."""
    if not is_concrete(value):
        return
    with np.errstate(over="ignore"):
        cast = np.asarray(value).astype(np.dtype(dtype))
    if not np.all(np.isfinite(cast)):
        raise ValueError(
            f"{name} must be finite in {np.dtype(dtype).name} (at most "
            f"{float(np.finfo(np.dtype(dtype)).max):.3g} in magnitude), got {np.asarray(value)}"
        )


def input_ok(mean: Any, sigma0: Any, generation: Any) -> Any:
    """Jittable: whether a run's input is valid (what ``invalid_input`` reports).

    sigma0 must lie in `sigma0_limits` of the state's dtype and, before the first
    generation, the mean (the start point) must be finite.
    """
    lo, hi = sigma0_limits(mean.dtype)
    ok = (sigma0 >= lo) & (sigma0 <= hi)
    return ok & ((generation > 0) | jnp.all(jnp.isfinite(mean)))


MAX_ELEMENTS = 2**31 - 1
"""Largest number of entries of one sampled population (int32 indexing)."""


def check_rows(name: str, rows: int, num_dims: int) -> None:
    """Require ``rows * num_dims`` entries to be indexable (and allocatable) at all."""
    if rows * num_dims > MAX_ELEMENTS:
        raise ValueError(
            f"{name}={rows} with num_dims={num_dims} gives a population of "
            f"{rows * num_dims:.3g} numbers; the limit is 2**31 - 1 (int32 indexing)"
        )


def check_key(key: Any, name: str = "key") -> None:
    """Require a PRNG key: ``jax.random.key(seed)`` or a raw ``uint32`` key of shape (2,).

    Raises:
      TypeError: a plain integer, None or another array, naming `name` and the fix.
    """
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return
    if dtype is not None and np.dtype(dtype) == np.uint32 and np.shape(key)[-1:] == (2,):
        return
    shown = f"{type(key).__name__} {key!r}" if dtype is None else f"an array of dtype {dtype}"
    raise TypeError(
        f"{name} must be a PRNG key: pass jax.random.key(seed) (or jax.random.split of one), "
        f"got {shown} of shape {np.shape(key)}"
    )


class Range(NamedTuple):
    """A range requirement on a params field (or an expression of fields).

    Attributes:
      name: what is checked, as the message names it (``"c_sigma"``, ``"c1 + c_mu"``).
      get: ``(params, xp) -> value`` with ``xp`` NumPy (concrete) or ``jax.numpy`` (traced).
      lower, upper: the bounds (±inf allowed).
      lower_closed, upper_closed: whether the bound itself is allowed.
      requirement: the message's wording (default from the bounds, e.g. ``> 0 and <= 1``).
    """

    name: str
    get: Callable[[Any, Any], Any]
    lower: float = -math.inf
    upper: float = math.inf
    lower_closed: bool = False
    upper_closed: bool = False
    requirement: str = ""

    def describe(self) -> str:
        """What is required, e.g. ``"must be > 0 and <= 1"`` (``"must be finite"``)."""
        if self.requirement:
            return self.requirement
        parts = []
        if self.lower > -math.inf or self.lower_closed:
            parts.append(f"{'>=' if self.lower_closed else '>'} {self.lower:g}")
        if self.upper < math.inf or self.upper_closed:
            parts.append(f"{'<=' if self.upper_closed else '<'} {self.upper:g}")
        if self.upper == math.inf and not self.upper_closed:
            parts.append("finite")
        return "must be " + " and ".join(parts)

    def holds(self, value: Any, xp: Any) -> Any:
        """Elementwise: the value lies in the range (NaN never does)."""
        low = value >= self.lower if self.lower_closed else value > self.lower
        high = value <= self.upper if self.upper_closed else value < self.upper
        return xp.all(low & high)


def field(name: str, lower: float = -math.inf, upper: float = math.inf, **closed: Any) -> Range:
    """A `Range` of the params field `name` (keywords ``lower_closed=`` ... as in `Range`)."""
    return Range(name, lambda p, xp: xp.asarray(getattr(p, name)), lower, upper, **closed)


def hparam(owner: str, key: str, lower: float = -math.inf, **closed: Any) -> Range:
    """A `Range` of the entry `key` of the dict field `owner` (injected optax hyperparameters)."""
    return Range(
        f"{owner}['{key}']", lambda p, xp: xp.asarray(getattr(p, owner)[key]), lower, **closed
    )


def real_number(name: str, value: Any) -> float:
    """`value` as a float, requiring a real number (NumPy scalars and 0-d arrays included).

    Raises:
      TypeError: a string, None, a bool, a complex number or an array, naming `name`.
    """
    if isinstance(value, bool | str) or value is None:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "dtype") and np.ndim(value) == 0 and is_concrete(value):
        check_real_dtype(name, value)
        return float(np.asarray(value))
    raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")


def integer(name: str, value: Any) -> Any:
    """`value` as an int when it is an integer (NumPy integers included); else unchanged."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def check_ranges(
    owner: str, params: Any, ranges: tuple[Range, ...], prefix: str = "params."
) -> None:
    """Raise a `ValueError` for the first concrete value outside its `Range`.

    Traced values are skipped (`ranges_ok` reports them as ``invalid_input`` at run time).
    The message names `owner`, the field (with `prefix`) and the interval.
    """
    traced_errors = (
        jax.errors.TracerArrayConversionError,
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerBoolConversionError,
    )
    for r in ranges:
        try:
            value = r.get(params, np)  # NumPy: jnp would be staged inside a jit
            if any_traced(value):
                continue
            holds = bool(r.holds(value, np))
        except (AttributeError, KeyError):
            continue
        except traced_errors:
            continue  # a traced value
        if not holds:
            raise ValueError(f"{owner}: {prefix}{r.name} {r.describe()}, got {value}")


def ranges_ok(params: Any, ranges: tuple[Range, ...]) -> Any:
    """Jittable: whether every `Range` holds (a traced boolean)."""
    ok = jnp.asarray(True)
    for r in ranges:
        ok = ok & r.holds(r.get(params, jnp), jnp)
    return ok


def check_state(owner: str, state: Any, cls: type, params_cls: type | None = None) -> None:
    """Require a state made by the strategy's own ``init`` (a `cls` with `params_cls`).

    Raises:
      TypeError: another strategy's state (``sep.tell(cma_state, ...)``), naming both.
    """
    params = getattr(state, "params", None)
    if not isinstance(state, cls) or (
        params_cls is not None and not isinstance(params, params_cls)
    ):
        got = type(state).__name__
        if params is not None:
            got += f" with {type(params).__name__}"
        want = cls.__name__ + (f" with {params_cls.__name__}" if params_cls else "")
        raise TypeError(f"{owner}: state must be a {want} from this strategy's init, got {got}")
