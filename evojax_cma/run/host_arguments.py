"""Checks of `evojax_cma.fmin`'s host arguments, before anything runs.

``x0`` must hold real numbers (strings are not parsed, unlike pycma), ``seed``,
``verbose`` and ``verb_disp`` must be ints, and a ``strategy=`` must not be configured
twice (``popsize``, ``preset`` and ``CMA_active`` configure the built-in CMA-ES). Each
error names the argument or option and what was expected. An ``x0`` function that fails
at a restart gives an `evojax_cma.FminError` that keeps the runs so far.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import check_int, check_vector
from evojax_cma.run.host_evaluation import EvaluationError, function_name
from evojax_cma.run.host_resume import FminError

STRATEGY_OPTIONS = ("preset", "CMA_active")
"""Options of the built-in CMA-ES that conflict with ``strategy=`` (as does a ``popsize``
other than the strategy's own)."""


def as_x0(x0: Any, n: int | None = None) -> np.ndarray:
    """`x0` as a float64 vector: real numbers only (no strings), finite, ``(n,)``.

    Raises:
      TypeError: strings, complex numbers or other non-real entries.
      ValueError: not a vector, a length other than `n`, or non-finite entries.
    """
    try:
        raw = np.asarray(x0)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"x0 must be a vector of real numbers, got {x0!r} ({exc})") from None
    if raw.dtype.kind not in "iuf":
        raise TypeError(
            f"x0 must be a vector of real numbers, got dtype {raw.dtype} ({x0!r}); "
            "strings are not parsed"
        )
    x = raw.astype(np.float64)
    if x.ndim != 1:
        raise ValueError(f"x0 must be a vector, got shape {x.shape}")
    check_vector("x0", x, x.shape[0] if n is None else n)
    return x


def restart_x0(draw_x0: Callable, key: Any, n: int, fail: Callable[..., FminError]) -> np.ndarray:
    """A restart's start point from the x0 function, checked.

    Raises:
      FminError: built by ``fail(EvaluationError)`` (with the result so far) when the
        function raises or returns a bad point (then an `FminTypeError` or
        `FminValueError`).
    """
    what = f"the x0 function {function_name(draw_x0)}"
    try:
        value = draw_x0(key)
    except Exception as exc:
        error = EvaluationError(f"{what} raised {type(exc).__name__}: {exc}")
        raise fail(error) from exc
    try:
        return as_x0(value, n)
    except (TypeError, ValueError) as exc:
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise fail(EvaluationError(f"{what} returned a bad x0: {exc}", kind=kind)) from None


def check_seed(seed: Any) -> int:
    """The ``seed`` option as an int (a `TypeError` otherwise; 64 bits at most)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"option seed must be an int, got {type(seed).__name__} {seed!r}")
    value = int(seed)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"option seed must fit in 64 bits (|seed| < 2**63), got {value}")
    return value


def int_option(options: dict[str, Any], name: str, default: int, minimum: int | None) -> int:
    """An integer option (``verbose`` may also be a bool), named in the error."""
    value = options.get(name, default)
    if name == "verbose" and isinstance(value, bool):
        return int(value)
    return check_int(f"option {name}", value, -(2**63) if minimum is None else minimum)


def check_strategy_options(
    strategy: Any, params: Any, restarts: Any, options: dict[str, Any], n: int
) -> None:
    """Conflicts between ``strategy=``, ``params=``, ``restarts=`` and the options.

    Raises:
      TypeError: `strategy` is not a `Strategy`, or ``restarts``/``popsize`` not an int.
      ValueError: restarts with a strategy or params; a strategy of another dimension;
        a ``popsize`` other than the strategy's, ``preset`` or ``CMA_active`` with it.
    """
    if (strategy is not None or params is not None) and check_int("restarts", restarts, 0):
        given = " and ".join(k for k, v in (("strategy", strategy), ("params", params)) if v)
        raise ValueError(
            f"restarts={restarts} builds a new CMA-ES for each population size, so it takes "
            f"neither strategy= nor params= (got {given})"
        )
    if strategy is None:
        return
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be an evojax_cma Strategy, got {type(strategy).__name__}")
    if strategy.num_dims != n:
        raise ValueError(
            f"x0 has {n} coordinates but the strategy has num_dims={strategy.num_dims}"
        )
    popsize = options.get("popsize")
    if popsize is not None and check_int("option popsize", popsize, 2) != strategy.popsize:
        raise ValueError(
            f"option popsize={popsize} conflicts with strategy= (popsize "
            f"{strategy.popsize}): set the population size in the strategy"
        )
    conflicts = [k for k in STRATEGY_OPTIONS if k in options]
    if conflicts:
        raise ValueError(
            f"options {conflicts} configure the built-in CMA-ES and conflict with "
            "strategy=: set them in the strategy instead"
        )


__all__ = [
    "STRATEGY_OPTIONS",
    "as_x0",
    "check_seed",
    "check_strategy_options",
    "int_option",
    "restart_x0",
]
