r"""OpenAI-ES: a search-gradient estimate fed to an optax optimiser.

Reference:
  T. Salimans, J. Ho, X. Chen, S. Sidor, I. Sutskever. Evolution Strategies as a Scalable
  Alternative to Reinforcement Learning. arXiv:1703.03864, 2017. ``[SHC17]`` below.

For the Gaussian smoothing :math:`J(m) = E_{\varepsilon \sim N(0, I)} f(m + \sigma\varepsilon)`
the score function gives :math:`\nabla_m J = \frac{1}{\sigma} E[f(m + \sigma\varepsilon)\,
\varepsilon]`, estimated from λ samples as ([SHC17], Algorithm 1 and 2)

.. math:: g = \frac{1}{\lambda \sigma} \sum_{i=1}^{\lambda} u_i \varepsilon_i,

with utilities :math:`u_i` from fitness shaping (centred ranks by default, [SHC17] §2.2;
``shaping="raw"`` uses :math:`u_i = f_i` and gives the unbiased estimator). Antithetic
(mirrored) sampling pairs :math:`\varepsilon` with :math:`-\varepsilon` ([SHC17] §2.2).
Weight decay adds ``weight_decay * m`` to :math:`g` (the L2 penalty of [SHC17] §2.2), and
the optax optimiser (Adam by default, [SHC17] §3) turns :math:`g` into a step. σ is fixed or
decays geometrically: :math:`\sigma \leftarrow \max(\sigma_{\min}, \sigma \cdot
\text{sigma\_decay})` after each generation, and never below the dtype's floor
(`evojax_cma.strategies._score_function.sigma_floor`: the resolution ``eps max|m|`` of the
mean and ``sqrt(tiny)``), so that a decay with ``sigma_min = 0`` cannot underflow σ to 0.

Numerical guards: utilities and the gradient are scaled down uniformly when their largest
entry exceeds ``sqrt(finfo.max) / 4`` (``shaping="raw"`` with ``|f| >= 1e20`` would
otherwise overflow Adam's second moment in float32; Adam ignores a uniform scale).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, NamedTuple, cast

import jax.numpy as jnp
import optax
from jax import Array

from evojax_cma.core import termination, validation
from evojax_cma.core.gaussian import (
    NoisePlan,
    check_chunking,
    check_hparams,
    optimizer_spec,
    params_with_overrides,
    resolve_shaping,
)
from evojax_cma.core.types import CHUNKED, Strategy
from evojax_cma.strategies._score_function import (
    GaussianState,
    bounded,
    score_function_strategy,
    sigma_floor,
)


class OpenESParams(NamedTuple):
    """Numeric hyperparameters of OpenAI-ES (vmap over any of them).

    Attributes:
      optimizer: dict of the optax hyperparameters that are injected (``learning_rate``,
        ``b1``, ``b2``, ``eps``, ... for Adam); empty for a ready ``GradientTransformation``.
      weight_decay: L2 coefficient added to the gradient as ``weight_decay * mean``.
      sigma_decay: factor applied to σ after each generation (1: fixed σ).
      sigma_min: lower bound of σ under decay.
    """

    optimizer: dict[str, Array]
    weight_decay: Array
    sigma_decay: Array
    sigma_min: Array


def open_es(
    num_dims: int,
    popsize: int,
    *,
    optimizer: Any = optax.adam,
    learning_rate: float = 0.01,
    antithetic: bool = True,
    shaping: Any = "centered_ranks",
    chunk_size: int | None = None,
    weight_decay: float = 0.0,
    sigma_decay: float = 1.0,
    sigma_min: float = 0.0,
    **stop_options: Any,
) -> Strategy:
    """Build an OpenAI-ES strategy (minimisation) on the common ``init/ask/tell`` interface.

    Args:
      num_dims: dimension n, >= 1.
      popsize: λ, >= 2 (even with antithetic sampling).
      optimizer: an optax factory taking ``learning_rate`` (default ``optax.adam``), whose
        float hyperparameters go into params, or a ready ``optax.GradientTransformation``.
      learning_rate: default learning rate for a factory, > 0.
      antithetic: mirrored sampling, ``[ε; -ε]`` in every chunk.
      shaping: ``"centered_ranks"`` (default), ``"z_score"``, ``"cma_weights"``, ``"raw"``
        or a function ``fitness (λ,) -> utilities (λ,)`` (lower is better).
      chunk_size: rows per noise chunk (must divide popsize; even if antithetic). With it,
        ``ask_chunk``/``tell_keyed`` and ``minimize(..., chunked=True)`` never form the
        whole population. Default: one chunk.
      weight_decay: default L2 coefficient (see `OpenESParams`), >= 0.
      sigma_decay: default factor on σ per generation (1: fixed σ), in (0, 1].
      sigma_min: default lower bound of σ under decay, >= 0 (σ also stops at the
        dtype's floor, see the module docstring).
      **stop_options: default termination thresholds under pycma's names.

    Returns:
      A `Strategy` whose state is a `GaussianState` with scalar σ. Its
      ``default_params(**overrides)`` takes the optimiser's hyperparameters by name
      (``learning_rate=``, ``b1=``, ...; a name shadowed by a field below only as
      ``optimizer={...}``) and ``weight_decay=``, ``sigma_decay=``, ``sigma_min=``;
      values may be traced, so ``jax.vmap(lambda lr: es.default_params(learning_rate=lr))``
      is a learning-rate grid.

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.open_es(10, 50, learning_rate=0.05)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(10),
      ...                   0.1, options={"maxiter": 300})
      >>> bool(res.state.best_f < 0.1)
      True
    """
    n = validation.check_int("num_dims", num_dims, 1)
    lam = validation.check_int("popsize", popsize, 2)
    validation.check_rows("popsize", lam, n)
    if not isinstance(antithetic, bool):
        raise TypeError(f"antithetic must be a bool, got {antithetic!r}")
    chunk_size = validation.integer("chunk_size", chunk_size)
    plan = NoisePlan(lam, n, check_chunking(lam, chunk_size, antithetic), antithetic)
    learning_rate = validation.real_number("learning_rate", learning_rate)
    spec = optimizer_spec(optimizer, learning_rate)
    shaping_fn = resolve_shaping(shaping)
    fields = dict(weight_decay=weight_decay, sigma_decay=sigma_decay, sigma_min=sigma_min)
    fields = {k: validation.real_number(k, v) for k, v in fields.items()}
    _check_fields(fields)
    ranges = (*_FIELD_RANGES, *_optimizer_ranges("optimizer", spec.defaults))
    validation.check_options("open_es option(s)", stop_options, set(termination.STOP_NAMES))
    tx = spec.build()

    def default_params(**overrides: Any) -> OpenESParams:
        """The constructor's defaults, updated by `overrides`, as arrays of the default float.

        Args:
          **overrides: ``learning_rate=``, ``b1=``, ... (the injected optax
            hyperparameters), ``optimizer={...}``, ``weight_decay=``, ``sigma_decay=``,
            ``sigma_min=``; concrete or traced scalars.

        Raises:
          TypeError: an unknown name (the message lists the valid ones).
          ValueError: a concrete value out of range.
        """
        optimizers = {"optimizer": (spec, "")}
        values = params_with_overrides("open_es.default_params", overrides, fields, optimizers)
        _check_fields(values)
        f = jnp.result_type(float)
        return OpenESParams(
            optimizer={k: jnp.asarray(v, f) for k, v in values["optimizer"].items()},
            **{k: jnp.asarray(values[k], f) for k in fields},
        )

    def check_params(params: Any) -> OpenESParams:
        """Require `OpenESParams` with concrete values in range.

        The ranges: `_FIELD_RANGES`, a learning rate > 0, finite optax hyperparameters.
        """
        validation.check_named_tuple(params, OpenESParams, {"weight_decay": ()})
        check_hparams("params.optimizer", params.optimizer)
        validation.check_ranges("open_es", params, ranges)
        return params

    def update(state: GaussianState, sums: tuple[Array, ...]) -> tuple[Array, Array, Any]:
        p = state.params
        grad = sums[0] / (lam * state.sigma) + p.weight_decay * state.mean  # [SHC17] Alg. 1
        updates, opt_state = tx.update(bounded(grad), state.opt_state, state.mean)
        mean = cast(Array, optax.apply_updates(state.mean, updates))
        sigma = jnp.maximum(p.sigma_min, state.sigma * p.sigma_decay)
        sigma = jnp.maximum(sigma, sigma_floor(state.sigma, state.mean))
        return mean, sigma.astype(state.sigma.dtype), opt_state

    return score_function_strategy(
        name="open_es",
        plan=plan,
        shaping_fn=shaping_fn,
        features=lambda eps: (eps,),
        update=update,
        default_params=default_params,
        check_params=check_params,
        init_sigma=lambda s0, params: s0,
        init_opt=lambda mean, sigma, params: spec.build(params.optimizer or None).init(mean),
        options=dict(
            shaping=shaping,
            optimizer=optimizer,
            learning_rate=learning_rate,
            **fields,
        ),
        stop_defaults=stop_options,
        capabilities=frozenset({CHUNKED}),
        params_ok=lambda params: validation.ranges_ok(params, ranges),
    )


_FIELD_RANGES = (
    validation.field("weight_decay", 0.0, lower_closed=True),
    validation.field("sigma_decay", 0.0, 1.0, upper_closed=True),
    validation.field("sigma_min", 0.0, lower_closed=True),
)
"""``weight_decay >= 0``, ``0 < sigma_decay <= 1`` (a decay; >1 would grow σ without bound),
``sigma_min >= 0``; all finite."""


def _optimizer_ranges(owner: str, hparams: dict[str, Any]) -> tuple[validation.Range, ...]:
    """A learning rate > 0 and finite values for every injected optax hyperparameter."""
    return tuple(
        validation.hparam(owner, k, 0.0 if k == "learning_rate" else -math.inf) for k in hparams
    )


def _check_fields(values: dict[str, Any]) -> None:
    """Range checks of the scalar fields, where their values are concrete."""
    validation.check_ranges("open_es", SimpleNamespace(**values), _FIELD_RANGES, prefix="")
