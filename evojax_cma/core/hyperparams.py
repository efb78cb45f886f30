"""One description of a strategy's hyperparameters: names, shapes and valid ranges.

Every strategy's params are a NamedTuple of arrays (vmappable field by field). A
`Schema` holds what the checks of those params need, so that ``default_params``
(overrides checked before tracing, values cast to the float dtype, ranges checked where
concrete), ``check_params`` (type, shapes, ranges) and the traced ``params_ok`` (the
``invalid_input`` flag under the user's ``jit``/``vmap``) are one mechanism for all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from evojax_cma.core import validation


@dataclasses.dataclass(frozen=True)
class Schema:
    """The hyperparameters of one strategy instance.

    Attributes:
      owner: the strategy's name, used in error messages (``"sep_cma_es"``).
      cls: the params NamedTuple.
      shapes: every field that ``default_params`` may override or that is `fixed`, with
        its shape (``()`` for scalars; None for any shape).
      ranges: the valid interval of each constrained field (`validation.Range`).
      integers: fields stored as int32 rather than the float dtype (``popsize``).
      fixed: fields of `shapes` that ``default_params`` sets itself and that are no
        overrides: ``popsize`` (its own argument, `masked_defaults`) and fields a
        strategy ignores (sep-CMA-ES's ``eigen_gap``). `check` still checks their shapes.
    """

    owner: str
    cls: type
    shapes: Mapping[str, tuple[int, ...] | None]
    ranges: tuple[validation.Range, ...]
    integers: frozenset[str] = frozenset()
    fixed: frozenset[str] = frozenset()

    def overridable(self) -> dict[str, tuple[int, ...] | None]:
        """The fields ``default_params`` takes as overrides, with their shapes."""
        return {k: s for k, s in self.shapes.items() if k not in self.fixed}

    def check_overrides(self, overrides: dict[str, Any]) -> None:
        """Unknown names, wrong shapes or NaN among ``default_params``' overrides raise."""
        validation.check_overrides(f"{self.owner}.default_params", overrides, self.overridable())

    def make(self, values: dict[str, Any]) -> Any:
        """The params from `values` (concrete or traced), cast and range-checked.

        Floats become JAX's default float dtype, `integers` int32.

        Raises:
          ValueError: a concrete value outside its range.
        """
        dtype = jnp.result_type(float)
        params = self.cls(
            **{
                k: validation.as_array(v, jnp.int32 if k in self.integers else dtype)
                for k, v in values.items()
            }
        )
        validation.check_ranges(f"{self.owner}.default_params", params, self.ranges, prefix="")
        return params

    def check(self, params: Any) -> Any:
        """Require a `cls` with the fixed-shape fields of `shapes`, concrete values in range.

        Raises:
          TypeError: not a `cls`.
          ValueError: a wrong shape, or a concrete value out of range (NaN included).
        """
        fixed = {k: s for k, s in self.shapes.items() if s is not None}
        validation.check_named_tuple(params, self.cls, fixed)
        validation.check_ranges(self.owner, params, self.ranges)
        return params

    def ok(self, params: Any) -> Any:
        """Jittable: whether every range holds (a traced boolean, for ``invalid_input``)."""
        return validation.ranges_ok(params, self.ranges)

    def default_params(self, derive: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable:
        """A strategy's ``default_params(**overrides)`` from `derive` (overrides to values).

        The function checks the overrides (`check_overrides`), asks `derive` for every
        field's value given them (concrete overrides arrive as float64 NumPy values,
        traced ones as they are) and returns `make` of the result.
        """

        def default_params(**overrides: Any) -> Any:
            self.check_overrides(overrides)
            if not validation.any_traced(overrides):
                overrides = _float64(overrides)
            return self.make(derive(overrides))

        names = sorted(self.overridable())
        default_params.__doc__ = (
            f"The default `{self.cls.__name__}` of this `{self.owner}`, with overrides.\n\n"
            "Args:\n"
            f"  **overrides: a value (concrete or traced) for any of {names};\n"
            "    what depends on an override is re-derived from it.\n\n"
            "Raises:\n"
            "  TypeError: an unknown override name (the message lists the valid ones).\n"
            "  ValueError: a wrong shape, NaN, or a concrete value out of range.\n"
        )
        return default_params

    def masked_defaults(
        self,
        derive: Callable[[Any, Any, dict[str, Any]], dict[str, Any]],
        popsize: Any,
        default_popsize: int,
        capacity: int,
        overrides: dict[str, Any],
    ) -> Any:
        """``default_params(popsize, **overrides)`` of a strategy with a masked λ.

        Such a strategy samples `capacity` rows (its ``max_popsize``) and its params'
        ``popsize`` says how many of them form the generation (`types.MASKED_POPSIZE`).

        Args:
          derive: ``(popsize, xp, overrides) -> values`` of every field; it gets ``numpy``
            and float64 overrides when everything is concrete, else ``jax.numpy``.
          popsize: λ: None for `default_popsize`, an int from 2 to `capacity`, or a traced
            integer (its range is then checked at run time, `ok`).
          default_popsize: the strategy's λ.
          capacity: the strategy's ``max_popsize``.
          overrides: the other fields' overrides (`check_overrides`).

        Returns:
          `make` of the derived values.

        Raises:
          TypeError: a non-integer `popsize` or an unknown override name.
          ValueError: `popsize` out of range, or overrides as `check_overrides` and `make`.
        """
        self.check_overrides(overrides)
        if popsize is None or validation.is_concrete(popsize):
            size = (
                default_popsize if popsize is None else validation.check_int("popsize", popsize, 2)
            )
            if size > capacity:
                raise ValueError(f"popsize must be at most max_popsize={capacity}, got {size}")
        else:
            size = jnp.asarray(popsize)
        if validation.any_traced(size, overrides):
            return self.make(derive(size, jnp, overrides))
        return self.make(derive(size, np, _float64(overrides)))


def _float64(overrides: dict[str, Any]) -> dict[str, Any]:
    """Concrete overrides as float64 NumPy values (constants are derived in float64)."""
    return {k: np.asarray(v, np.float64) for k, v in overrides.items()}
