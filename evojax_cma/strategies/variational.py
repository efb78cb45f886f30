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

(elementwise) for Gaussian ε. With ``perturbation="laplace"`` or ``"student_t"``
(`evojax_cma.core.gaussian.Perturbation`), :math:`\varepsilon_i` and
:math:`\varepsilon_i^2 - 1` become that density's scores :math:`\psi(\varepsilon_i)` and
:math:`\varepsilon_i\psi(\varepsilon_i) - 1` (σ times the gradient of :math:`\log p`
w.r.t. m, and its gradient w.r.t. :math:`\log\sigma`), so the estimates stay unbiased for
that density's smoothing (σ is its standard deviation). The utilities :math:`u_i` are
shaped fitness values that sum to zero
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
from typing import Any, NamedTuple, cast

import jax.numpy as jnp
import optax
from jax import Array

from evojax_cma.core import validation
from evojax_cma.core.gaussian import hyperparameters, optimizer_spec
from evojax_cma.core.types import Strategy
from evojax_cma.strategies._score_function import (
    GaussianState,
    bounded,
    common_settings,
    score_function_strategy,
    sigma_floor,
)


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
    sigma_learning_rate: float = 0.01,
    sigma_min: float = 1e-12,
    sigma_max: float = 1e12,
    **options: Any,
) -> Strategy:
    """Build variational optimisation with a learned diagonal σ (minimisation).

    Args:
      num_dims: dimension n, >= 1.
      popsize: λ, >= 2 (even with antithetic sampling).
      sigma_learning_rate: default learning rate of log σ, > 0.
      sigma_min: default lower bound of σ, > 0.
      sigma_max: default upper bound of σ.
      **options: the keywords of `evojax_cma.open_es`'s ``**options``, with the same
        defaults (`evojax_cma.strategies._score_function.SHARED_OPTIONS`), and pycma's
        stop options. Here ``optimizer`` (an optax factory or ``GradientTransformation``)
        serves both the mean and log σ (separate states and hyperparameters),
        ``learning_rate`` is the mean's, ``weight_decay`` the mean's L2 coefficient, and
        σ is the standard deviation of every ``perturbation``.

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
    settings, own = common_settings("variational", num_dims, popsize, options)
    lam, n = settings.plan.popsize, settings.plan.num_dims
    sigma_learning_rate = validation.real_number("sigma_learning_rate", sigma_learning_rate)
    mean_spec = optimizer_spec(own["optimizer"], own["learning_rate"])
    sigma_spec = optimizer_spec(own["optimizer"], sigma_learning_rate)
    fields = dict(weight_decay=own["weight_decay"], sigma_min=sigma_min, sigma_max=sigma_max)
    optimizers = {"mean_optimizer": (mean_spec, ""), "sigma_optimizer": (sigma_spec, "sigma_")}
    default_params, schema = hyperparameters(
        "variational", VariationalParams, fields, FIELD_RANGES, optimizers
    )
    mean_tx, sigma_tx = mean_spec.build(), sigma_spec.build()

    def init_opt(mean: Array, sigma: Array, params: VariationalParams) -> Any:
        return (
            mean_spec.build(params.mean_optimizer or None).init(mean),
            sigma_spec.build(params.sigma_optimizer or None).init(jnp.log(sigma)),
        )

    def update(state: GaussianState, sums: tuple[Array, ...]) -> tuple[Array, Array, Any, Array]:
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
        return mean, sigma, (mean_opt, sigma_opt), grad_mean

    return score_function_strategy(
        settings,
        learn_scale=True,
        update=update,
        default_params=default_params,
        schema=schema,
        init_sigma=lambda s0, params: jnp.full((n,), s0),
        init_opt=init_opt,
        options={**own, **fields, "sigma_learning_rate": sigma_learning_rate},
    )


FIELD_RANGES = (
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
