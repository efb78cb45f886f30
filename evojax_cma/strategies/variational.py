r"""Variational optimisation: learn the mean *and* the per-coordinate σ by score functions.

References:
  J. Staines, D. Barber. Variational Optimization. arXiv:1212.4507, 2012. ``[SB12]``.
  D. Wierstra et al. Natural Evolution Strategies. JMLR 15, 2014 (the same gradients for
  the separable Gaussian, without the natural-gradient step). ``[WSG14]``.
  The project's background article "ES and variational optimisation with learned σ"
  (``../shared/background``) motivates the 1-D example in the tests.

:math:`\min_x f(x) \le \min_{m,\sigma} J(m, \sigma)` with
:math:`J = E_{\varepsilon \sim N(0, I)} f(m + \sigma \odot \varepsilon)` ([SB12], Eq. 1).
Both m and :math:`\log\sigma` descend :math:`J` along the score-function estimates
([SB12] §2; [WSG14] §4)

.. math::
   \nabla_m J \approx \frac{1}{\lambda\sigma} \sum_i u_i \varepsilon_i, \qquad
   \nabla_{\log\sigma} J \approx \frac{1}{\lambda} \sum_i u_i (\varepsilon_i^2 - 1),

(elementwise), where the utilities :math:`u_i` are shaped fitness values that sum to zero
(centred ranks by default), which makes them a baseline-subtracted estimate. Each of the
two gradients goes through its own optax optimiser (Adam by default) with its own learning
rate. σ then follows the landscape: it shrinks near a minimum (where larger perturbations
are worse) and grows on a plateau whose improvements lie only in the tails. σ is clipped
to ``[sigma_min, sigma_max]`` after each step, and never below the dtype's floor
(`evojax_cma.strategies._score_function.sigma_floor`), so that ``log σ`` stays finite.
Gradients and utilities are guarded as in `evojax_cma.open_es`.
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
from evojax_cma.strategies.open_es import _optimizer_ranges


class VariationalParams(NamedTuple):
    """Numeric hyperparameters of variational optimisation (vmap over any of them).

    Attributes:
      mean_optimizer: injected optax hyperparameters of the mean's optimiser.
      sigma_optimizer: injected optax hyperparameters of the log-σ optimiser.
      weight_decay: L2 coefficient added to the mean's gradient.
      sigma_min, sigma_max: σ is clipped to this range after every step.
    """

    mean_optimizer: dict[str, Array]
    sigma_optimizer: dict[str, Array]
    weight_decay: Array
    sigma_min: Array
    sigma_max: Array


def variational(
    num_dims: int,
    popsize: int,
    *,
    optimizer: Any = optax.adam,
    learning_rate: float = 0.01,
    sigma_learning_rate: float = 0.01,
    antithetic: bool = True,
    shaping: Any = "centered_ranks",
    chunk_size: int | None = None,
    weight_decay: float = 0.0,
    sigma_min: float = 1e-12,
    sigma_max: float = 1e12,
    **stop_options: Any,
) -> Strategy:
    """Build variational optimisation with a learned diagonal σ (minimisation).

    Args:
      num_dims: dimension n, >= 1.
      popsize: λ, >= 2 (even with antithetic sampling).
      optimizer: optax factory (default ``optax.adam``) or ``GradientTransformation``,
        used for both the mean and log σ (separate states and hyperparameters).
      learning_rate: default learning rate of the mean, > 0.
      sigma_learning_rate: default learning rate of log σ, > 0.
      antithetic: mirrored sampling, as in `evojax_cma.open_es`.
      shaping: fitness shaping, as in `evojax_cma.open_es`.
      chunk_size: rows per noise chunk, as in `evojax_cma.open_es`.
      weight_decay: default L2 coefficient of the mean, >= 0.
      sigma_min: default lower bound of σ, > 0.
      sigma_max: default upper bound of σ.
      **stop_options: default termination thresholds under pycma's names.

    Returns:
      A `Strategy` whose state is a `GaussianState` with σ of shape ``(n,)``. Its
      ``default_params(**overrides)`` takes the mean optimiser's hyperparameters by
      their optax names (``learning_rate=``, ``b1=``, ...), the log-σ optimiser's with the
      prefix ``sigma_`` (``sigma_learning_rate=``, ``sigma_b1=``, ...), the whole dicts
      as ``mean_optimizer={...}`` / ``sigma_optimizer={...}``, and ``weight_decay=``,
      ``sigma_min=``, ``sigma_max=``; values may be traced (vmappable).

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.variational(2, 20, learning_rate=0.1, sigma_learning_rate=0.1)
      >>> state = es.init(None, jnp.zeros(2), 1.0)
      >>> for g in range(30):  # at the minimum, σ shrinks
      ...     x, state = es.ask(jax.random.key(g), state)
      ...     state = es.tell(state, x, jnp.sum(x**2, axis=1))
      >>> bool(jnp.all(state.sigma < 1.0))
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
    sigma_learning_rate = validation.real_number("sigma_learning_rate", sigma_learning_rate)
    mean_spec = optimizer_spec(optimizer, learning_rate)
    sigma_spec = optimizer_spec(optimizer, sigma_learning_rate)
    shaping_fn = resolve_shaping(shaping)
    fields = dict(weight_decay=weight_decay, sigma_min=sigma_min, sigma_max=sigma_max)
    fields = {k: validation.real_number(k, v) for k, v in fields.items()}
    _check_fields(fields)
    validation.check_options("variational option(s)", stop_options, set(termination.STOP_NAMES))
    mean_tx, sigma_tx = mean_spec.build(), sigma_spec.build()
    optimizers = {"mean_optimizer": (mean_spec, ""), "sigma_optimizer": (sigma_spec, "sigma_")}
    ranges = (
        *_FIELD_RANGES,
        *_optimizer_ranges("mean_optimizer", mean_spec.defaults),
        *_optimizer_ranges("sigma_optimizer", sigma_spec.defaults),
    )

    def default_params(**overrides: Any) -> VariationalParams:
        """The constructor's defaults, updated by `overrides`, as arrays of the default float.

        Args:
          **overrides: ``learning_rate=``, ``b1=``, ... (mean optimiser),
            ``sigma_learning_rate=``, ``sigma_b1=``, ... (log-σ optimiser),
            ``mean_optimizer={...}``, ``sigma_optimizer={...}``, ``weight_decay=``,
            ``sigma_min=``, ``sigma_max=``; concrete or traced scalars.

        Raises:
          TypeError: an unknown name (the message lists the valid ones).
          ValueError: a concrete value out of range.
        """
        owner = "variational.default_params"
        values = params_with_overrides(owner, overrides, fields, optimizers)
        _check_fields(values)
        f = jnp.result_type(float)
        hparams = {
            name: {k: jnp.asarray(v, f) for k, v in values[name].items()} for name in optimizers
        }
        return VariationalParams(
            mean_optimizer=hparams["mean_optimizer"],
            sigma_optimizer=hparams["sigma_optimizer"],
            **{k: jnp.asarray(values[k], f) for k in fields},
        )

    def check_params(params: Any) -> VariationalParams:
        """Require `VariationalParams` with concrete values in range.

        The ranges: `_FIELD_RANGES`, learning rates > 0, finite optax hyperparameters.
        """
        validation.check_named_tuple(params, VariationalParams, {"weight_decay": ()})
        check_hparams("params.mean_optimizer", params.mean_optimizer)
        check_hparams("params.sigma_optimizer", params.sigma_optimizer)
        validation.check_ranges("variational", params, ranges)
        return params

    def init_opt(mean: Array, sigma: Array, params: VariationalParams) -> Any:
        return (
            mean_spec.build(params.mean_optimizer or None).init(mean),
            sigma_spec.build(params.sigma_optimizer or None).init(jnp.log(sigma)),
        )

    def update(state: GaussianState, sums: tuple[Array, ...]) -> tuple[Array, Array, Any]:
        p = state.params
        mean_opt, sigma_opt = state.opt_state
        grad_mean = sums[0] / (lam * state.sigma) + p.weight_decay * state.mean
        grad_log_sigma = sums[1] / lam
        step, mean_opt = mean_tx.update(bounded(grad_mean), mean_opt, state.mean)
        log_sigma = jnp.log(state.sigma)
        s_step, sigma_opt = sigma_tx.update(bounded(grad_log_sigma), sigma_opt, log_sigma)
        log_sigma = cast(Array, optax.apply_updates(log_sigma, s_step))
        sigma = jnp.clip(jnp.exp(log_sigma), p.sigma_min, p.sigma_max)
        sigma = jnp.maximum(sigma, sigma_floor(state.sigma, state.mean))
        mean = cast(Array, optax.apply_updates(state.mean, step))
        return mean, sigma, (mean_opt, sigma_opt)

    return score_function_strategy(
        name="variational",
        plan=plan,
        shaping_fn=shaping_fn,
        features=lambda eps: (eps, eps**2 - 1),
        update=update,
        default_params=default_params,
        check_params=check_params,
        init_sigma=lambda s0, params: jnp.full((n,), s0),
        init_opt=init_opt,
        options=dict(
            shaping=shaping,
            optimizer=optimizer,
            learning_rate=learning_rate,
            sigma_learning_rate=sigma_learning_rate,
            **fields,
        ),
        stop_defaults=stop_options,
        capabilities=frozenset({CHUNKED}),
        params_ok=lambda params: validation.ranges_ok(params, ranges),
    )


_FIELD_RANGES = (
    validation.field("weight_decay", 0.0, lower_closed=True),
    validation.field("sigma_min", 0.0),
    validation.field("sigma_max", 0.0, math.inf, upper_closed=True),
    validation.Range(
        "sigma_max - sigma_min",
        lambda p, xp: xp.asarray(p.sigma_max - p.sigma_min),
        0.0,
        math.inf,
        upper_closed=True,
        requirement="must be > 0 (need 0 < sigma_min < sigma_max)",
    ),
)
"""``weight_decay >= 0``, ``0 < sigma_min < sigma_max`` (σ = 0 would make log σ infinite)."""


def _check_fields(values: dict[str, Any]) -> None:
    """Range checks of the scalar fields, where their values are concrete."""
    validation.check_ranges("variational", SimpleNamespace(**values), _FIELD_RANGES, prefix="")
