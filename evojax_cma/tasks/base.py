"""The task interface, its up-front check, and the small MLP that the shipped tasks use.

A task is a hashable value (so it can be a static ``jit`` argument, and two tasks built
with the same settings compare equal and do not recompile) with

* ``name`` (str) and ``higher_is_better`` (bool, for `score`),
* ``init_params(key) -> pytree`` of floating arrays (one dtype),
* ``loss(params, key) -> scalar`` to *minimise*: a stochastic fitness such as a minibatch
  cross entropy or a negated mean episode return, the key drawing the minibatch or the
  episodes,
* ``score(params, key) -> scalar`` for reporting (held-out accuracy, mean return over
  test episodes).

`check_task` traces all three abstractly (``jax.eval_shape``) and names the task in any
error, before a run compiles anything.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import prng
from evojax_cma.pytree import OnPytree, ParamSpec, on_pytree, param_spec


@runtime_checkable
class Task(Protocol):
    """What a driver needs from a task (see the module docstring); any hashable value fits."""

    @property
    def name(self) -> str:
        """A short name for logs and results."""
        ...

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger `score` is better (the `loss` is always minimised)."""
        ...

    def init_params(self, key: Array) -> Any:
        """An initial parameter pytree of floating arrays of one dtype."""
        ...

    def loss(self, params: Any, key: Array) -> Array:
        """The scalar to minimise; `key` draws the minibatch or the episodes."""
        ...

    def score(self, params: Any, key: Array) -> Array:
        """A scalar for reporting (held-out accuracy, mean test return)."""
        ...


def check_task(task: Any, key: Array | None = None) -> ParamSpec:
    """Check a task's interface and output shapes abstractly, before any run.

    ``init_params``, ``loss`` and ``score`` are traced with ``jax.eval_shape`` (nothing is
    computed), so a wrong shape is reported at once with the task's name rather than deep
    inside a compiled loop.

    Args:
      task: a value with the `Task` attributes.
      key: the PRNG key given to the traced calls (default ``jax.random.key(0)``).

    Returns:
      The `ParamSpec` of the task's parameters, for `evojax_cma.pytree.on_pytree`.

    Raises:
      TypeError: a missing or non-callable method, a non-string name, a non-bool
        ``higher_is_better``, an unhashable task, or parameter leaves that are not
        floating arrays of one dtype.
      ValueError: ``loss`` or ``score`` failing on the task's own parameters, or
        returning anything but one real scalar.
    """
    label = _label(task)
    for method in ("init_params", "loss", "score"):
        if not callable(getattr(task, method, None)):
            raise TypeError(f"task {label} needs a callable {method}(...)")
    if not isinstance(getattr(task, "name", None), str):
        raise TypeError(f"task {label} needs a str attribute 'name'")
    if not isinstance(getattr(task, "higher_is_better", None), bool):
        raise TypeError(f"task {label} needs a bool attribute 'higher_is_better'")
    try:
        hash(task)
    except TypeError as err:
        raise TypeError(
            f"task {label} must be hashable (a frozen dataclass or NamedTuple of settings, "
            f"data kept out of its fields) to be a static jit argument: {err}"
        ) from err
    key = jax.random.key(0) if key is None else key
    shapes = jax.eval_shape(task.init_params, key)
    leaves = jax.tree_util.tree_leaves(shapes)
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"task {label}: init_params must return floating arrays, got a leaf of "
                f"dtype {leaf.dtype}"
            )
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    try:
        spec = param_spec(zeros)
    except (TypeError, ValueError) as err:
        raise type(err)(f"task {label}: init_params: {err}") from err
    for method in ("loss", "score"):
        try:
            out = jax.eval_shape(getattr(task, method), shapes, key)
        except (IndexError, TypeError, ValueError) as err:
            raise ValueError(
                f"task {label}: {method}(params, key) failed on the parameters from "
                f"init_params: {type(err).__name__}: {err}"
            ) from err
        shape = getattr(out, "shape", None)
        dtype = getattr(out, "dtype", None)
        if shape != () or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            got = f"shape {shape} dtype {dtype}" if shape is not None else type(out).__name__
            raise ValueError(
                f"task {label}: {method}(params, key) must return one real scalar "
                f"(shape ()), got {got}"
            )
    return spec


@dataclasses.dataclass(frozen=True)
class TaskMethod:
    """``getattr(task, method)`` as a value: equal for equal tasks (a bound method is not)."""

    task: Any
    method: str = "loss"

    def __call__(self, params: Any, *args: Any) -> Array:
        """The task's `method` at ``(params, *args)`` (usually ``(params, key)``)."""
        return getattr(self.task, self.method)(params, *args)


def task_objective(task: Any, spec: ParamSpec | None = None, method: str = "loss") -> OnPytree:
    """A keyed objective of flat vectors, ``f(x, key)``, from a task's loss (or score).

    Pass it to ``evojax_cma.minimize(..., keyed=True)``. Python compares bound methods by
    the identity of their object, so ``on_pytree(task.loss, spec)`` built from two equal
    tasks would be two static arguments and compile twice; this objective compares by
    value, and equal tasks share one compilation.

    Args:
      task: a `Task`.
      spec: the parameters' layout (default: ``check_task(task)``, which also checks it).
      method: ``"loss"`` (minimised in training) or ``"score"``.

    Returns:
      ``on_pytree(TaskMethod(task, method), spec)``.
    """
    if method not in ("loss", "score"):
        raise ValueError(f"method must be 'loss' or 'score', got {method!r}")
    spec = check_task(task) if spec is None else spec
    return on_pytree(TaskMethod(task, method), spec)


def _label(task: Any) -> str:
    name = getattr(task, "name", None)
    kind = type(task).__name__
    return f"{name!r} ({kind})" if isinstance(name, str) else kind


def require(module: str, extra_for: str) -> ModuleType:
    """Import an optional dependency, or fail with the extra that installs it.

    Args:
      module: the module to import, e.g. ``"gymnax"``.
      extra_for: what needs it, for the message (e.g. ``"GymnaxControl"``).

    Raises:
      ImportError: naming the package and ``pip install 'evojax_cma[tasks]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = {"sklearn": "scikit-learn"}.get(module.split(".")[0], module.split(".")[0])
        raise ImportError(
            f"{extra_for} needs {package}, an optional dependency: "
            f"pip install 'evojax_cma[tasks]' (or pip install {package})"
        ) from err


def check_hidden(hidden: Any) -> tuple[int, ...]:
    """Hidden layer widths as a tuple of positive ints (a list is accepted)."""
    if isinstance(hidden, int | np.integer):
        hidden = (hidden,)
    if not isinstance(hidden, Sequence) or isinstance(hidden, str):
        raise ValueError(f"hidden must be a tuple of positive ints, got {hidden!r}")
    out = tuple(hidden)
    if not all(isinstance(h, int | np.integer) and not isinstance(h, bool) for h in out):
        raise ValueError(f"hidden must be a tuple of positive ints, got {hidden!r}")
    if any(h < 1 for h in out):
        raise ValueError(f"hidden layer widths must be >= 1, got {hidden!r}")
    return tuple(int(h) for h in out)


def check_dtype(dtype: Any) -> str:
    """A floating dtype's name (for a hashable task field)."""
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"dtype must be a floating dtype, got {dtype!r}") from err
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype!r}")
    return dt.name


def mlp_init(key: Array, sizes: Sequence[int], dtype: Any = "float32") -> dict[str, Array]:
    """Parameters of an MLP with layer widths `sizes` (input first, output last).

    Weights are LeCun-normal (standard deviation ``1/sqrt(fan_in)``), biases zero.

    Args:
      key: a PRNG key.
      sizes: ``(inputs, hidden..., outputs)``, at least two entries.
      dtype: the floating dtype of every leaf.

    Returns:
      A dict ``{"w0": (sizes[0], sizes[1]), "b0": (sizes[1],), "w1": ..., ...}``.
    """
    keys = prng.split(key, len(sizes) - 1)
    params: dict[str, Array] = {}
    for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        w = prng.normal(k, (fan_in, fan_out), dtype) / math.sqrt(fan_in)
        params[f"w{i}"] = w
        params[f"b{i}"] = jnp.zeros((fan_out,), dtype)
    return params


def mlp_apply(params: dict[str, Array], x: Array) -> Array:
    """The MLP's output (tanh hidden layers, linear output) for ``x`` of shape ``(..., in)``.

    Args:
      params: from `mlp_init`.
      x: inputs, any leading axes.

    Returns:
      Outputs of shape ``(..., out)`` in the parameters' dtype.
    """
    layers = len(params) // 2
    dtype = params["w0"].dtype
    h = jnp.asarray(x).astype(dtype)
    for i in range(layers):
        b = params[f"b{i}"]
        h = h @ params[f"w{i}"] + b.reshape((1,) * (h.ndim - 1) + b.shape)
        if i < layers - 1:
            h = jnp.tanh(h)
    return h
