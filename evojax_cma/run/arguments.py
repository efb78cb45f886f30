"""The drivers' shared keywords, checked before anything is traced.

The keywords themselves (names, types, defaults, meanings) are declared once, in
`evojax_cma.run.keywords`; this module checks them. The problem keywords
(`evojax_cma.run.keywords.ProblemKeywords`: ``bounds``, ``bound_handler``, ``encoding``,
``constraints``, ``noise_handling``, ``batched``, ``keyed``, ...) `build_pipeline`
turns them into one `evojax_cma.transforms.Pipeline`:
``chain(encoding, bounds, noise handler, augmented Lagrangian)``, so that the augmented
Lagrangian penalises the objective's values first, the noise handler measures those, and
the bound penalty is added last (fitness flows back through a chain).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from evojax_cma.core.validation import (
    check_finite_in,
    check_int,
    check_vector,
    is_concrete,
    state_dtype,
)
from evojax_cma.run.keywords import ProblemKeywords
from evojax_cma.run.step import Problem
from evojax_cma.transforms.base import Pipeline, Transform, chain
from evojax_cma.transforms.bound_penalty import bound_penalty
from evojax_cma.transforms.constraints import augmented_lagrangian
from evojax_cma.transforms.encodings import (
    Box,
    bound_transform,
    check_bounds,
    warn_if_outside,
)
from evojax_cma.transforms.noise import NoiseHandler, noise_handler

BOUND_HANDLERS = ("transform", "penalty")
"""pycma's ``BoundaryHandler`` choices: ``BoundTransform`` (default) and ``BoundPenalty``."""


def build_pipeline(
    num_dims: int,
    *,
    bounds: Any = None,
    bound_handler: str = "transform",
    encoding: Transform | Pipeline | None = None,
    noise_handling: Any = None,
    num_constraints: int = 0,
) -> Pipeline:
    """Validate the problem keywords and compose them into a pipeline.

    Args:
      num_dims: n.
      bounds: None or ``(lower, upper)``, each a scalar or ``(n,)`` (±inf allowed).
      bound_handler: ``"transform"`` or ``"penalty"``.
      encoding: a transformation (`evojax_cma.scaling`, `evojax_cma.chain` of several,
        ...) applied before the bounds, or None.
      noise_handling: None/False, True (pycma's ``noise_handler=True``) or
        `evojax_cma.noise_handler(...)` settings.
      num_constraints: m (0: no constraints).

    Raises:
      TypeError: `encoding` is not a transformation, `bounds` not a pair,
        `noise_handling` of another type.
      ValueError: an unknown bound handler, NaN bounds, a wrong shape or
        ``lower >= upper``; an encoding of another dimension.
    """
    if bound_handler not in BOUND_HANDLERS:
        raise ValueError(f"bound_handler must be one of {BOUND_HANDLERS}, got {bound_handler!r}")
    if encoding is not None and not isinstance(encoding, Transform | Pipeline):
        raise TypeError(
            "encoding must be an evojax_cma transformation (scaling, log_scale, "
            f"bound_transform, chain(...)), got {type(encoding).__name__}"
        )
    if encoding is not None and chain(encoding).stateful:
        raise ValueError(
            "encoding takes stateless transformations (scaling, log_scale, bound_transform); "
            "pass bounds=, constraints= and noise_handling= for the others"
        )
    box = None
    if bounds is not None:
        if not isinstance(bounds, tuple | list) or len(bounds) != 2:
            raise TypeError(f"bounds must be a pair (lower, upper), got {bounds!r}")
        lower, upper = check_bounds(bounds[0], bounds[1], num_dims)
        box = (bound_penalty if bound_handler == "penalty" else bound_transform)(lower, upper)
    noise = _noise_handler(noise_handling)
    al = augmented_lagrangian(num_constraints) if num_constraints else None
    pipeline = chain(encoding, box, noise, al)
    pipeline.check(num_dims)
    return pipeline


def problem_and_pipeline(
    strategy: Any,
    fn: Callable[..., Any],
    x0: Any,
    keywords: ProblemKeywords,
    *,
    rows: int | None = None,
    data: Any = None,
) -> tuple[Problem, Pipeline]:
    """The JAX drivers' `Problem` and `Pipeline` from their keywords, checked.

    `x0` is the start point (the constraints are tried there when it is concrete), a
    ``jax.ShapeDtypeStruct`` when only its dtype is known, or None (nothing checked that
    needs the run's dtype). Its dtype is the run's (`state_dtype`): the objective's output
    is checked in it (`check_objective`, on `rows` points when batched, default
    ``strategy.popsize``; with `data`, called as ``fn(x, data[, key])``) and the
    transformations' settings must be representable in it. Raises what `build_pipeline`,
    `check_data` and `count_constraints` raise, a `ValueError` when a transformation
    needs a capability the strategy lacks, and a `ValueError` for ``n_repeats < 1`` or
    ``n_repeats``/``common_keys`` without ``keyed``.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    k = keywords
    n_repeats = check_int("n_repeats", k.n_repeats, 1)
    if not k.keyed and (n_repeats > 1 or k.common_keys):
        raise ValueError("n_repeats > 1 and common_keys=True need keyed=True (fn(x, key))")
    if data is not None:
        check_data(data)
    n = strategy.num_dims
    dtype = None if x0 is None else state_dtype(x0)
    if dtype is not None:
        points = strategy.popsize if rows is None else rows
        check_objective(fn, n, points, k.batched, k.keyed, dtype, data=data)
    m = 0 if k.constraints is None else count_constraints(k.constraints, n, k.batched, x0)
    pipeline = build_pipeline(
        n,
        bounds=k.bounds,
        bound_handler=k.bound_handler,
        encoding=k.encoding,
        noise_handling=k.noise_handling,
        num_constraints=m,
    )
    pipeline.check_strategy(strategy)
    if dtype is not None:
        pipeline.check_dtype(dtype)
    flags = (bool(k.batched), bool(k.keyed), k.constraints, data is not None)
    return Problem(fn, *flags, n_repeats, bool(k.common_keys)), pipeline


def check_data(data: Any) -> None:
    """Require a pytree of arrays (JAX or NumPy) as an objective's ``data``.

    Raises:
      TypeError: naming the first leaf that is not an array (a Python number, a string,
        ...): a traced argument must be an array so that new values of the same shapes
        reuse the compiled loop.
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(data)
    for path, leaf in leaves:
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            raise TypeError(
                f"data must be a pytree of arrays; data{jax.tree_util.keystr(path)} is a "
                f"{type(leaf).__name__} ({leaf!r}); wrap numbers in jnp.asarray"
            )


def check_objective(
    fn: Callable[..., Any],
    num_dims: int,
    rows: int,
    batched: bool,
    keyed: bool,
    dtype: Any,
    *,
    data: Any = None,
    name: str = "fn",
) -> None:
    """Trace `fn` abstractly (``jax.eval_shape``) and require one real value per point.

    With `data` (not None), `fn` is called as ``fn(x, data[, key])``; `name` names the
    function in the messages.

    Raises:
      ValueError: a per-point `fn` whose output is not a scalar (e.g. shape ``(n,)``), a
        batched one whose output is not ``(rows,)``; `fn` failing on an input of the
        expected shape (a per-point function passed with ``batched=True``).
      TypeError: a complex or non-numeric output.
    """
    shape = (rows, num_dims) if batched else (num_dims,)
    args: list[Any] = [jax.ShapeDtypeStruct(shape, dtype)]
    if data is not None:
        args.append(jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), data))
    if keyed:
        args.append(jax.random.key(0))
    kind = "a population" if batched else "one point"
    try:
        out = jax.eval_shape(fn, *args)
    except (IndexError, TypeError, ValueError) as err:
        hint = (
            " (a function of one point needs batched=False)"
            if batched
            else " (a function of a whole population needs batched=True)"
        )
        if name != "fn":  # a test function: its arguments follow fn's (data, key)
            hint = f" (it is called as {name}(x{', data' if data is not None else ''}"
            hint += f"{', key' if keyed else ''}))"
        raise ValueError(
            f"{name} failed on {kind} of shape {shape}{hint}: {type(err).__name__}: {err}"
        ) from err
    want = (rows,) if batched else ()
    out_shape = getattr(out, "shape", None)
    if out_shape != want:
        hint = " (a function of one point needs batched=False)" if batched else ""
        raise ValueError(
            f"{name} must return shape {want} for {kind} of shape {shape}, got "
            f"{out_shape if out_shape is not None else type(out).__name__}{hint}"
        )
    out_dtype = np.dtype(out.dtype)
    if np.issubdtype(out_dtype, np.complexfloating) or not (
        np.issubdtype(out_dtype, np.number) or out_dtype == np.bool_
    ):
        raise TypeError(f"{name} must return real values, got dtype {out_dtype}")


def _noise_handler(noise_handling: Any) -> NoiseHandler | None:
    if noise_handling is None or noise_handling is False:
        return None
    if noise_handling is True:
        return noise_handler()
    if isinstance(noise_handling, NoiseHandler):
        return noise_handling
    raise TypeError(
        "noise_handling must be a bool or evojax_cma.noise_handler(...), "
        f"got {type(noise_handling).__name__}"
    )


def count_constraints(constraints: Any, num_dims: int, batched: bool, x0: Any) -> int:
    """The number m of a JAX constraint function, after checking its shape (and x0 values)."""
    if not callable(constraints):
        raise TypeError(f"constraints must be callable, got {type(constraints).__name__}")
    shape = (1, num_dims) if batched else (num_dims,)
    point = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
    out = jax.eval_shape(constraints, point)
    out_shape = getattr(out, "shape", None)
    want = "(popsize, m)" if batched else "(m,)"
    if out_shape is None or len(out_shape) != len(shape) or out_shape[:-1] != shape[:-1]:
        raise ValueError(
            f"constraints must return shape {want} for input of shape {shape}, got {out_shape}"
        )
    if out_shape[-1] < 1:
        raise ValueError("constraints must return at least one value (m >= 1)")
    if x0 is not None and is_concrete(x0) and not isinstance(x0, jax.ShapeDtypeStruct):
        x = jnp.reshape(jnp.asarray(x0, jnp.result_type(float)), shape)
        values = np.asarray(constraints(x))
        if not np.all(np.isfinite(values)):
            raise ValueError(f"constraints returned non-finite values at x0: {values}")
    return int(out_shape[-1])


def initial_genotype(pipeline: Pipeline, x0: Any) -> jax.Array:
    """The genotype of a phenotype `x0` (moved into the box, with a warning, if outside).

    Raises:
      ValueError: a concrete genotype that is not finite (an encoding's ``encode``
        overflowed, e.g. a tiny scale).
    """
    for t in pipeline.transforms:
        if isinstance(t, Box) and is_concrete(x0):
            warn_if_outside(x0, t.lower, t.upper)
    dtype = state_dtype(x0)
    genotype = pipeline.encode(jnp.asarray(x0).astype(dtype)).astype(dtype)
    try:  # NumPy: jnp would be staged inside a user's jit
        finite = bool(np.all(np.isfinite(np.asarray(genotype))))
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        finite = True  # traced: invalid_input reports a non-finite start
    if not finite:
        raise ValueError(
            f"x0 encodes to a non-finite start point in {dtype.name}: {np.asarray(genotype)}; "
            "check the encoding's scale and offset"
        )
    return genotype


def check_x0_vector(x0: Any, num_dims: int, where: str) -> None:
    """Require a vector ``(n,)``; a function gets an error that says where it belongs."""
    if callable(x0):
        raise TypeError(
            f"x0 must be a vector of shape ({num_dims},) in {where}, got a function; "
            "a function of a key that draws x0 for each run is taken by "
            "evojax_cma.minimize_restarts and evojax_cma.fmin"
        )
    check_vector("x0", x0, num_dims)
    check_finite_in("x0", x0, state_dtype(x0))


def check_x0_function(x0: Callable[..., Any]) -> None:
    """Require a function of one argument (a PRNG key), the convention of every driver."""
    try:
        params = inspect.signature(x0).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(required) > 1 or (not required and not variadic):
        raise TypeError(
            "x0 as a function must take one argument, a PRNG key, and return a vector "
            "(e.g. evojax_cma.uniform_x0(lower, upper), or lambda key: "
            f"np.random.uniform(-5, 5, n)); got a function of {len(required)} arguments"
        )


__all__ = [
    "BOUND_HANDLERS",
    "build_pipeline",
    "check_data",
    "check_x0_function",
    "check_objective",
    "check_x0_vector",
    "count_constraints",
    "initial_genotype",
    "problem_and_pipeline",
]
