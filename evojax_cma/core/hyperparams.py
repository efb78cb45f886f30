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
      shapes: every field that ``default_params`` may override, with its shape
        (``()`` for scalars; None for any shape).
      ranges: the valid interval of each constrained field (`validation.Range`).
      integers: fields stored as int32 rather than the float dtype (``popsize``).
    """

    owner: str
    cls: type
    shapes: Mapping[str, tuple[int, ...] | None]
    ranges: tuple[validation.Range, ...]
    integers: frozenset[str] = frozenset()

    def check_overrides(self, overrides: dict[str, Any]) -> None:
        """Unknown names, wrong shapes or NaN among ``default_params``' overrides raise."""
        validation.check_overrides(f"{self.owner}.default_params", overrides, dict(self.shapes))

    def make(self, values: dict[str, Any]) -> Any:
        """The params from `values` (concrete or traced), cast and range-checked.

        Floats become JAX's default float dtype, `integers` int32.

        Raises:
          ValueError: a concrete value outside its range.
        """
        dtype = jnp.result_type(float)
        params = self.cls(
            **{
                k: jnp.asarray(v, jnp.int32 if k in self.integers else dtype)
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
                overrides = {k: np.asarray(v, np.float64) for k, v in overrides.items()}
            return self.make(derive(overrides))

        default_params.__doc__ = (
            f"The default `{self.cls.__name__}` of this `{self.owner}`, with overrides.\n\n"
            "Args:\n"
            f"  **overrides: a value (concrete or traced) for any of {sorted(self.shapes)};\n"
            "    what depends on an override is re-derived from it.\n\n"
            "Raises:\n"
            "  TypeError: an unknown override name (the message lists the valid ones).\n"
            "  ValueError: a wrong shape, NaN, or a concrete value out of range.\n"
        )
        return default_params
