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
(mirrored) sampling pairs :math:`\varepsilon` with :math:`-\varepsilon` ([SHC17] §2.2), on
neighbouring rows of the population (`evojax_cma.core.gaussian`, "Noise by chunks").
The perturbations may be Gaussian (the paper's), Laplace or Student-t
(``perturbation=``, `evojax_cma.core.gaussian.Perturbation`): :math:`\varepsilon_i` is then
replaced by the score :math:`\psi(\varepsilon_i)` of that density in the sum, which keeps
:math:`g` an unbiased estimate of the gradient of :math:`E f(m + \sigma\varepsilon)` under
that density (σ is the perturbations' standard deviation in every case). Weight decay
adds ``weight_decay * m`` to :math:`g` (the L2 penalty of [SHC17] §2.2), and
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

from typing import Any, NamedTuple, cast

import jax.numpy as jnp
import optax
from jax import Array

from evojax_cma.core import validation
from evojax_cma.core.gaussian import hyperparameters, optimizer_spec
from evojax_cma.core.types import Strategy
from evojax_cma.strategies._score_function import (
    GaussianState,
    Secondary,
    bounded,
    common_settings,
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
    sigma_decay: float = 1.0,
    sigma_min: float = 0.0,
    **options: Any,
) -> Strategy:
    """Build an OpenAI-ES strategy (minimisation) on the common ``init/ask/tell`` interface.

    Args:
      num_dims: dimension n, >= 1.
      popsize: λ, >= 2 (even with antithetic sampling).
      sigma_decay: default factor on σ per generation (1: fixed σ), in (0, 1].
      sigma_min: default lower bound of σ under decay, >= 0 (σ also stops at the
        dtype's floor, see the module docstring).
      **options: the keywords every score-function strategy takes
        (`evojax_cma.strategies._score_function.SHARED_OPTIONS`, defaults in brackets)
        and pycma's stop options, that is:
        optimizer: an optax factory taking ``learning_rate`` [``optax.adam``], whose
          float hyperparameters go into params, or a ready ``optax.GradientTransformation``.
        learning_rate: default learning rate for a factory, > 0 [0.01].
        antithetic: mirrored sampling [True]: pairs ``ε, -ε`` on neighbouring rows of
          every chunk (rows ``2i`` and ``2i + 1``, so that a population split over
          devices keeps each pair on one device). Earlier builds laid a chunk out as
          ``[ε; -ε]``: the same points in another order, so runs agree with theirs only
          to rounding.
        shaping: ``"centered_ranks"`` (default), ``"z_score"``, ``"cma_weights"``, ``"raw"``
          or a function ``fitness (λ,) -> utilities (λ,)`` (lower is better).
        chunk_size: rows per noise chunk (must divide popsize; even if antithetic). With it,
          ``ask_chunk``/``tell_keyed`` and ``minimize(..., chunked=True)`` never form the
          whole population. Default: one chunk.
        perturbation: the density of ε, scaled to unit variance: ``"gaussian"`` (default),
          ``"laplace"`` or ``"student_t"`` (heavier tails; needs `df`).
        df: Student-t's degrees of freedom, > 2 (only with ``perturbation="student_t"``).
        weight_decay: default L2 coefficient (see `OpenESParams`), >= 0 [0].
        ftarget, maxiter, ...: default termination thresholds under pycma's names.

    Returns:
      A `Strategy` whose state is a `GaussianState` with scalar σ. Its
      ``default_params(**overrides)`` takes the optimiser's hyperparameters by name
      (``learning_rate=``, ``b1=``, ...; a name shadowed by a field below only as
      ``optimizer={...}``) and ``weight_decay=``, ``sigma_decay=``, ``sigma_min=``;
      values may be traced, so ``jax.vmap(lambda lr: es.default_params(learning_rate=lr))``
      is a learning-rate grid.

    Raises:
      TypeError, ValueError: a bad argument, named (e.g. an unknown `perturbation`, or
        ``df <= 2``).

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.open_es(10, 50, learning_rate=0.05)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(10),
      ...                   0.1, options={"maxiter": 300})
      >>> bool(res.state.best_f < 0.1)
      True
    """
    return build_open_es(dict(locals()))


def build_open_es(
    arguments: dict[str, Any],
    *,
    name: str = "open_es",
    params_cls: type = OpenESParams,
    extra_fields: tuple[dict[str, Any], tuple[validation.Range, ...]] = ({}, ()),
    secondary: Secondary | None = None,
    extra_options: dict[str, Any] | None = None,
) -> Strategy:
    """OpenAI-ES from `open_es`'s arguments by name, optionally extended (`evojax_cma.nsr_es`).

    Args:
      arguments: every argument of `open_es`, by name (``options`` a dict).
      name: the strategy's name.
      params_cls: the params NamedTuple: `OpenESParams`' fields and `extra_fields`' names.
      extra_fields: further scalar params fields with their defaults, and their ranges.
      secondary: a second objective blended into the utilities.
      extra_options: further static settings that make the strategy's identity.
    """
    settings, own = common_settings(
        name, arguments["num_dims"], arguments["popsize"], arguments["options"]
    )
    lam = settings.plan.popsize
    spec = optimizer_spec(own["optimizer"], own["learning_rate"])
    fields = dict(
        weight_decay=own["weight_decay"],
        sigma_decay=arguments["sigma_decay"],
        sigma_min=arguments["sigma_min"],
    )
    default_params, schema = hyperparameters(
        name,
        params_cls,
        {**fields, **extra_fields[0]},
        (*FIELD_RANGES, *extra_fields[1]),
        {"optimizer": (spec, "")},
    )
    tx = spec.build()

    def update(state: GaussianState, sums: tuple[Array, ...]) -> tuple[Array, Array, Any, Array]:
        p = state.params
        grad = sums[0] / (lam * state.sigma) + p.weight_decay * state.mean  # [SHC17] Alg. 1
        updates, opt_state = tx.update(bounded(grad), state.opt_state, state.mean)
        mean = cast(Array, optax.apply_updates(state.mean, updates))
        sigma = jnp.maximum(p.sigma_min, state.sigma * p.sigma_decay)
        sigma = jnp.maximum(sigma, sigma_floor(state.sigma, state.mean))
        return mean, sigma.astype(state.sigma.dtype), opt_state, grad

    return score_function_strategy(
        settings,
        learn_scale=False,
        update=update,
        default_params=default_params,
        schema=schema,
        init_sigma=lambda s0, params: s0,
        init_opt=lambda mean, sigma, params: spec.build(params.optimizer or None).init(mean),
        options={**own, **fields, **(extra_options or {})},
        secondary=secondary,
    )


FIELD_RANGES = (
    validation.field("weight_decay", 0.0, lower_closed=True),
    validation.field("sigma_decay", 0.0, 1.0, upper_closed=True),
    validation.field("sigma_min", 0.0, lower_closed=True),
)
"""``weight_decay >= 0``, ``0 < sigma_decay <= 1`` (a decay; >1 would grow σ without bound),
``sigma_min >= 0``; all finite."""
