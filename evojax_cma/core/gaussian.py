r"""Shared machinery of the score-function strategies (OpenAI-ES, variational optimisation).

Noise by chunks (OpenAI's shared-seed trick)
--------------------------------------------
A population of ``popsize`` perturbations :math:`\varepsilon_i \sim N(0, I_n)` is cut into
``popsize / chunk_size`` chunks. The noise of chunk ``c`` is drawn from
``jax.random.fold_in(key, c)`` alone, so any chunk can be regenerated from the ``ask`` key
without storing the others. With antithetic sampling each chunk is ``[e; -e]`` for
``e`` of shape ``(chunk_size / 2, n)``. `all_noise` concatenates the chunks (what ``ask``
returns), `noise_chunk` regenerates one, and `utility_sums` accumulates
:math:`\sum_i u_i \phi(\varepsilon_i)` chunk by chunk with ``lax.scan`` so that a tell never
holds more than ``chunk_size x n`` numbers.

Optimisers
----------
`OptimizerSpec` wraps an optax optimiser. Given a factory such as ``optax.adam``, its numeric
hyperparameters (``learning_rate``, ``b1``, ...) are injected with
``optax.inject_hyperparams`` and live in the strategy's params pytree, so a learning-rate
sweep is a ``jax.vmap``. A ready ``optax.GradientTransformation`` is used as given (its
hyperparameters are then fixed). `params_with_overrides` resolves a strategy's
``default_params(**overrides)``: every params field by its name, and every injected
hyperparameter by its own name (with a prefix per optimiser when there are several).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array, lax

from evojax_cma.core import shaping
from evojax_cma.core.validation import check_options, check_overrides, is_concrete

Shaping = Callable[[Array], Array]


def check_chunking(popsize: int, chunk_size: int | None, antithetic: bool) -> int:
    """Validate `popsize`/`chunk_size` (and evenness for antithetic sampling); return the size."""
    if antithetic and popsize % 2:
        raise ValueError(f"popsize must be even with antithetic=True, got {popsize}")
    if chunk_size is None:
        return popsize
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if popsize % chunk_size:
        raise ValueError(f"chunk_size must divide popsize={popsize}, got {chunk_size}")
    if antithetic and chunk_size % 2:
        raise ValueError(f"chunk_size must be even with antithetic=True, got {chunk_size}")
    return chunk_size


def resolve_shaping(shaping_fn: str | Shaping) -> Shaping:
    """Look `shaping_fn` up in `evojax_cma.core.shaping.SHAPINGS` unless it is callable."""
    if callable(shaping_fn):
        return shaping_fn
    if shaping_fn not in shaping.SHAPINGS:
        raise ValueError(
            f"shaping must be a callable or one of {sorted(shaping.SHAPINGS)}, got {shaping_fn!r}"
        )
    return shaping.SHAPINGS[shaping_fn]


class NoisePlan(NamedTuple):
    """Static layout of the perturbations of one generation."""

    popsize: int
    num_dims: int
    chunk_size: int
    antithetic: bool

    @property
    def num_chunks(self) -> int:
        """Number of chunks per generation."""
        return self.popsize // self.chunk_size


def noise_chunk(plan: NoisePlan, key: Array, index: Array, dtype: Any) -> Array:
    """Perturbations of chunk `index`, shape ``(chunk_size, n)``, from ``fold_in(key, index)``."""
    k = jax.random.fold_in(key, index)
    if plan.antithetic:
        e = jax.random.normal(k, (plan.chunk_size // 2, plan.num_dims), dtype)
        return jnp.concatenate([e, -e])
    return jax.random.normal(k, (plan.chunk_size, plan.num_dims), dtype)


def all_noise(plan: NoisePlan, key: Array, dtype: Any) -> Array:
    """All perturbations of a generation, ``(popsize, n)``: the chunks one after another."""
    chunks = jax.vmap(lambda c: noise_chunk(plan, key, c, dtype))(jnp.arange(plan.num_chunks))
    return chunks.reshape(plan.popsize, plan.num_dims)


def utility_sums(
    plan: NoisePlan,
    key: Array,
    utilities: Array,
    features: Callable[[Array], tuple[Array, ...]],
    dtype: Any,
) -> tuple[Array, ...]:
    r"""``sum_i u_i phi_k(eps_i)`` for each feature ``phi_k``, regenerating noise per chunk."""
    u = utilities.reshape(plan.num_chunks, plan.chunk_size)

    def body(acc, c):
        phis = features(noise_chunk(plan, key, c, dtype))
        return tuple(a + u[c] @ f for a, f in zip(acc, phis, strict=True)), None

    n_feats = len(features(jnp.zeros((1, plan.num_dims), dtype)))
    zero = tuple(jnp.zeros(plan.num_dims, dtype) for _ in range(n_feats))
    return lax.scan(body, zero, jnp.arange(plan.num_chunks))[0]


class OptimizerSpec(NamedTuple):
    """An optax optimiser with (optionally) injected, vmappable hyperparameters."""

    factory: Callable[..., optax.GradientTransformation] | None
    transform: optax.GradientTransformation | None
    defaults: dict[str, float]

    def build(self, hparams: dict[str, Any] | None = None) -> optax.GradientTransformation:
        """The transformation; a factory is wrapped in ``optax.inject_hyperparams``."""
        if self.factory is None:
            assert self.transform is not None
            return self.transform
        values = self.defaults if hparams is None else hparams
        return optax.inject_hyperparams(self.factory)(**values)


def optimizer_spec(optimizer: Any, learning_rate: float) -> OptimizerSpec:
    """Wrap `optimizer`: an optax factory (``optax.adam``) or a ``GradientTransformation``.

    For a factory, the injected hyperparameters are ``learning_rate`` (default
    `learning_rate`) and every other argument whose default is a float (``b1``, ``b2``,
    ``eps``, ``momentum`` when given a float default, ...).
    """
    if isinstance(optimizer, optax.GradientTransformation):
        return OptimizerSpec(None, optimizer, {})
    if not callable(optimizer):
        raise TypeError(
            "optimizer must be an optax factory such as optax.adam or an "
            f"optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float):
        raise TypeError(f"learning_rate must be a float, got {learning_rate!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    defaults = {"learning_rate": float(learning_rate)}
    for name, p in inspect.signature(optimizer).parameters.items():
        if isinstance(p.default, float) and name != "learning_rate":
            defaults[name] = p.default
    factory = cast(Callable[..., optax.GradientTransformation], optimizer)
    return OptimizerSpec(factory, None, defaults)


def check_hparams(name: str, hparams: dict[str, Any]) -> None:
    """Require a positive learning rate where it is concrete (checked before tracing)."""
    lr = hparams.get("learning_rate")
    if lr is not None and is_concrete(lr):
        if not np.all(np.asarray(lr) > 0):  # NumPy: jnp would be staged inside a jit
            raise ValueError(f"{name}['learning_rate'] must be > 0, got {lr}")


def params_with_overrides(
    owner: str,
    overrides: dict[str, Any],
    fields: dict[str, Any],
    optimizers: dict[str, tuple[OptimizerSpec, str]],
) -> dict[str, Any]:
    """The fields of a score-function strategy's params: defaults updated by `overrides`.

    Args:
      owner: for error messages, e.g. ``"open_es.default_params"``.
      overrides: keyword arguments of ``default_params``; values may be traced.
      fields: the scalar params fields with their defaults (``weight_decay``, ...).
      optimizers: params field (``"optimizer"``) -> ``(spec, prefix)``. Hyperparameter
        ``h`` of that optimiser is overridden by the keyword ``prefix + h``
        (``learning_rate``, ``sigma_b1``, ...) unless that name is already a field, and
        always by the field itself, a dict merged into the defaults
        (``optimizer={"b1": 0.8}``).

    Returns:
      A dict of every params field: the scalars and one hyperparameter dict per optimiser.

    Raises:
      TypeError: an unknown name; the message lists the valid ones.
      ValueError: a value that is not a scalar, is NaN, or a concrete learning rate <= 0.
    """
    flat: dict[str, tuple[str, str]] = {}
    for field, (spec, prefix) in optimizers.items():
        for h in spec.defaults:
            key = prefix + h
            if key not in fields and key not in optimizers and key not in flat:
                flat[key] = (field, h)
    shapes: dict[str, tuple[int, ...] | None] = {k: () for k in (*fields, *flat)}
    shapes.update({k: None for k in optimizers})
    check_overrides(owner, overrides, shapes)
    values = {k: overrides.get(k, v) for k, v in fields.items()}
    for field, (spec, _) in optimizers.items():
        given = overrides.get(field, {})
        if not isinstance(given, dict):
            raise TypeError(f"{field} must be a dict of hyperparameters, got {given!r}")
        check_options(f"{owner}({field}=...) hyperparameter(s)", given, frozenset(spec.defaults))
        hparams = {**spec.defaults, **given}
        hparams.update(
            {h: overrides[k] for k, (f, h) in flat.items() if f == field and k in overrides}
        )
        check_hparams(field, hparams)
        values[field] = hparams
    return values
