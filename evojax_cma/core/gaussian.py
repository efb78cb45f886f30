r"""Shared machinery of the score-function strategies (OpenAI-ES, variational optimisation).

Perturbations
-------------
The perturbations are i.i.d. per coordinate with mean 0 and variance 1, drawn from a
`Perturbation`: Gaussian (the default), Laplace or Student-t with ``df > 2`` degrees of
freedom, each scaled to unit variance so that σ is the standard deviation of every
coordinate of ``x = m + σ ε`` whichever density is chosen (termination and summaries read
it as such). For a density :math:`q` of ε the score functions of
:math:`p(x) = \prod_j q((x_j - m_j)/\sigma_j)/\sigma_j` are

.. math::
   \nabla_{m} \log p = \psi(\varepsilon) / \sigma, \qquad
   \nabla_{\log\sigma} \log p = \varepsilon\,\psi(\varepsilon) - 1, \qquad
   \psi = -\frac{d}{d\varepsilon}\log q,

with :math:`\psi(\varepsilon) = \varepsilon` (Gaussian), :math:`\sqrt{2}\,\mathrm{sign}\,
\varepsilon` (Laplace with scale :math:`1/\sqrt 2`) and :math:`(\nu + 1)\varepsilon /
(\nu - 2 + \varepsilon^2)` (Student-t with ν degrees of freedom and scale
:math:`\sqrt{(\nu - 2)/\nu}`). Integration by parts makes
:math:`\frac{1}{\sigma}E[f(m + \sigma\varepsilon)\psi(\varepsilon)]` the gradient of the
smoothed objective :math:`E f(m + \sigma\varepsilon)` for each of them (the Laplace density
is not differentiable at 0, but it is absolutely continuous, which is all the step needs).
All three are symmetric, so antithetic pairs ``(e, -e)`` keep the distribution.

Noise by chunks (OpenAI's shared-seed trick)
--------------------------------------------
A population of ``popsize`` perturbations :math:`\varepsilon_i` is cut into
``popsize / chunk_size`` chunks. The noise of chunk ``c`` is drawn from
``jax.random.fold_in(key, c)`` alone, so any chunk can be regenerated from the ``ask`` key
without storing the others. With antithetic sampling chunk ``c`` holds the pairs of ``e``
of shape ``(chunk_size / 2, n)`` interleaved, ``e_0, -e_0, e_1, -e_1, ...`` (row ``2i`` is
``e_i``, row ``2i + 1`` is ``-e_i``), so that a population split by rows over devices keeps
each pair on one device: each device draws its rows' ``e`` and mirrors them itself (with
``[e; -e]`` the devices holding ``-e`` needed ``e`` from the others, an all-gather of the
half chunk per generation). Earlier builds laid chunks out as ``[e; -e]``: a run with the
same key now gives the same points in another row order, and agrees with the earlier run
only to rounding (the gradient sums add in another order; long runs may drift apart).
`all_noise` concatenates the chunks (what ``ask`` returns), `noise_chunk` regenerates one,
and `utility_sums` accumulates
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
hyperparameter by its own name (with a prefix per optimiser when there are several), and
`hyperparameters` builds a strategy's ``default_params`` and the `Schema` of its params.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array, lax

from evojax_cma.core import hyperparams, prng, shaping, validation
from evojax_cma.core.validation import check_options, check_overrides, is_concrete, real_number

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


PERTURBATIONS = ("gaussian", "laplace", "student_t")
"""The names `perturbation` accepts."""


class Perturbation(NamedTuple):
    """The density of the standardised perturbations ε (i.i.d., mean 0, variance 1).

    A static, hashable value (equal settings compare equal); build it with `perturbation`.

    Attributes:
      name: one of `PERTURBATIONS`.
      df: Student-t's degrees of freedom ν (> 2); None for the others.
    """

    name: str = "gaussian"
    df: float | None = None

    def sample(self, key: Array, shape: tuple[int, ...], dtype: Any) -> Array:
        """Standardised draws of `shape` (Gaussian: ``jax.random.normal`` exactly)."""
        if self.name == "laplace":
            return jax.random.laplace(prng.sampling_key(key), shape, dtype) * math.sqrt(0.5)
        if self.name == "student_t":
            assert self.df is not None
            scale = math.sqrt((self.df - 2.0) / self.df)
            return jax.random.t(prng.sampling_key(key), self.df, shape, dtype) * scale
        return prng.normal(key, shape, dtype)

    def score(self, eps: Array) -> Array:
        r"""ψ(ε) = -d log q / dε, elementwise: σ ∇_m log p (see the module docstring)."""
        if self.name == "laplace":
            return math.sqrt(2.0) * jnp.sign(eps)
        if self.name == "student_t":
            assert self.df is not None
            return (self.df + 1.0) * eps / (self.df - 2.0 + eps**2)
        return eps

    def scale_score(self, eps: Array) -> Array:
        r"""ε ψ(ε) - 1, elementwise: ∇_{log σ} log p (see the module docstring)."""
        if self.name == "student_t":  # ε² / (ν - 2 + ε²) stays finite when ε² overflows
            assert self.df is not None
            e2 = eps**2
            return (self.df + 1.0) * jnp.where(jnp.isinf(e2), 1.0, e2 / (self.df - 2.0 + e2)) - 1
        return eps * self.score(eps) - 1.0


def perturbation(name: Any = "gaussian", df: Any = None) -> Perturbation:
    """The `Perturbation` called `name`, checked.

    Args:
      name: ``"gaussian"``, ``"laplace"`` or ``"student_t"``.
      df: Student-t's degrees of freedom, a finite real number > 2 (σ is the standard
        deviation, so the variance must exist); required for ``"student_t"``, None for the
        others.

    Raises:
      TypeError: `name` not a string, `df` not a real number.
      ValueError: an unknown name, a missing or out-of-range `df`, or a `df` given with
        another distribution.
    """
    if not isinstance(name, str):
        raise TypeError(f"perturbation must be a string, got {type(name).__name__} {name!r}")
    if name not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {list(PERTURBATIONS)}, got {name!r}")
    if name != "student_t":
        if df is not None:
            raise ValueError(f"df applies to perturbation='student_t' only, got df={df!r}")
        return Perturbation(name)
    if df is None:
        raise ValueError("perturbation='student_t' needs df, its degrees of freedom (> 2)")
    df = real_number("df", df)
    if not (math.isfinite(df) and df > 2):
        raise ValueError(
            f"df must be finite and > 2 (σ is the perturbation's standard deviation, and a "
            f"Student-t has a finite variance only for df > 2), got {df}"
        )
    return Perturbation(name, df)


class NoisePlan(NamedTuple):
    """Static layout of the perturbations of one generation, and their density."""

    popsize: int
    num_dims: int
    chunk_size: int
    antithetic: bool
    perturbation: Perturbation = Perturbation()

    @property
    def num_chunks(self) -> int:
        """Number of chunks per generation."""
        return self.popsize // self.chunk_size


def noise_chunk(plan: NoisePlan, key: Array, index: Array, dtype: Any) -> Array:
    """Perturbations of chunk `index`, shape ``(chunk_size, n)``, from ``fold_in(key, index)``.

    Antithetic: ``e_0, -e_0, e_1, -e_1, ...`` (pairs on neighbouring rows, see the module
    docstring).
    """
    k = prng.fold_in(key, index)
    if plan.antithetic:
        e = plan.perturbation.sample(k, (plan.chunk_size // 2, plan.num_dims), dtype)
        return jnp.stack([e, -e], axis=1).reshape(plan.chunk_size, plan.num_dims)
    return plan.perturbation.sample(k, (plan.chunk_size, plan.num_dims), dtype)


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


def hyperparameters(
    owner: str,
    cls: type,
    fields: dict[str, Any],
    field_ranges: tuple[validation.Range, ...],
    optimizers: dict[str, tuple[OptimizerSpec, str]],
) -> tuple[Callable[..., Any], hyperparams.Schema]:
    """A score-function strategy's ``default_params`` and the `Schema` that checks params.

    Args:
      owner: the strategy's name.
      cls: its params NamedTuple: the `fields` and one dict per optimiser.
      fields: the scalar fields with the constructor's values (checked here).
      field_ranges: their valid ranges.
      optimizers: params field -> ``(OptimizerSpec, keyword prefix)``, as in
        `evojax_cma.core.gaussian.params_with_overrides`; every injected hyperparameter
        must be finite, a learning rate > 0.

    Raises:
      TypeError, ValueError: a constructor value that is not a real number in range.
    """
    fields = {k: validation.real_number(k, v) for k, v in fields.items()}
    ranges = tuple(field_ranges) + tuple(
        validation.hparam(f, k, 0.0 if k == "learning_rate" else -math.inf)
        for f, (spec, _) in optimizers.items()
        for k in spec.defaults
    )
    shapes: dict[str, tuple[int, ...] | None] = {k: () for k in fields}
    schema = hyperparams.Schema(owner, cls, {**shapes, **dict.fromkeys(optimizers)}, ranges)

    def default_params(**overrides: Any) -> Any:
        """The constructor's defaults, updated by `overrides`, as arrays of the default float.

        Args:
          **overrides: any params field, and each injected optax hyperparameter by its
            name with its optimiser's prefix (``learning_rate=``, ``sigma_b1=``, ...);
            concrete or traced scalars.

        Raises:
          TypeError: an unknown name (the message lists the valid ones).
          ValueError: a concrete value out of range.
        """
        values = params_with_overrides(f"{owner}.default_params", overrides, fields, optimizers)
        dtype = jnp.result_type(float)
        params = cls(**jax.tree.map(lambda v: jnp.asarray(v, dtype), values))
        validation.check_ranges(owner, params, ranges, prefix="")
        return params

    default_params()  # the constructor's values, checked now
    return default_params, schema
