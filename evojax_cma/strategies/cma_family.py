r"""What the CMA-ES family shares: params, weights, E‖N‖, the default λ and the paths.

The full (`evojax_cma.cma_es`) and diagonal (`evojax_cma.sep_cma_es`) variants, and
`evojax_cma.lm_ma_es` for its λ and weights, import these pieces from here, as blackjax's
NUTS reuses HMC. Equation numbers refer to Hansen's tutorial (arXiv:1604.00772).

Weights: `cma_raw_weights` (Eq. 49) and `mueff_of` (Eq. 8) live in
`evojax_cma.core.shaping`, because the core needs them without importing strategies
(``shaping.cma_utilities`` ranks by them and ``transforms.bound_penalty`` reads μ_eff); they are
re-exported here so that the family's pieces have one address. `finalize_negative_weights`
(Eqs. 50-53) and `expected_norm` are the family's own.

Params: `CMAParams` is the hyperparameter type of both variants (``SepCMAParams`` is
another name for it), with one `params_schema` for their checks; each variant's presets
give its defaults.

Evolution paths: the variants differ only in how they whiten a step
(:math:`C^{-1/2} y`), which the caller does before calling `cumulate`. Two forms of the
:math:`h_\sigma` test exist (see the table in `evojax_cma.cma_es`): ``"pycma"`` tests
:math:`\|p_\sigma\|^2 / (1-(1-c_\sigma)^{2g}) / n < 2 + 4/(n+1)`, the tutorial (and cmaes)
:math:`\|p_\sigma\| / \sqrt{1-(1-c_\sigma)^{2g}} < (1.4 + 2/(n+1)) E\|N(0,I)\|`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import hyperparams, validation
from evojax_cma.core.shaping import cma_raw_weights, mueff_of, rank_population
from evojax_cma.core.validation import Range, field


class CMAParams(NamedTuple):
    """Numeric hyperparameters of CMA-ES and sep-CMA-ES (JAX arrays; vmap over any of them).

    Both `evojax_cma.cma_es` and `evojax_cma.sep_cma_es` take this type (``SepCMAParams``
    is another name for it); their presets give the defaults (the tables of their
    modules). sep-CMA-ES applies each rate to the diagonal of C alone.

    Attributes:
      weights: ``(max_popsize,)`` recombination weights, best first; positive ones sum to
        1, negative ones drive the active update (Eqs. 49-53; sep-CMA-ES ignores them).
      c_m: learning rate of the mean (Eq. 54).
      c_sigma: cumulation constant of the step-size path (Eq. 55).
      d_sigma: damping of the step-size update (Eq. 55).
      c_c: cumulation constant of the rank-one path (Eq. 56).
      c1: rank-one learning rate (Eq. 57; sep-CMA-ES's is raised by ``(n+2)/3``, [RH08]).
      c_mu: rank-mu learning rate (Eq. 58; raised likewise by sep-CMA-ES).
      chi_n: E‖N(0, I)‖ used in Eq. (44).
      max_log_sigma_change: bound on ``|log(σ_new/σ)|`` per generation (pycma: 1;
        inf: none).
      eigen_gap: generations between two eigendecompositions of C (0: every one).
        sep-CMA-ES ignores it (a diagonal C needs no decomposition): its defaults set 0
        and its ``default_params`` takes no override of it.
      popsize: λ, the number of leading rows of ``ask``'s population that form the
        generation (int32, at most the strategy's ``popsize``, its ``max_popsize``);
        ``tell`` ignores the other rows, so one compiled strategy runs (and vmaps over)
        several population sizes.
    """

    weights: Array
    c_m: Array
    c_sigma: Array
    d_sigma: Array
    c_c: Array
    c1: Array
    c_mu: Array
    chi_n: Array
    max_log_sigma_change: Array
    eigen_gap: Array
    popsize: Array


_COMMON_RANGES: tuple[Range, ...] = (
    field("weights"),  # finite
    Range("weights (sum of the positive ones)", lambda p, xp: xp.sum(xp.maximum(p.weights, 0))),
    field("c_m", 0.0),
    field("c_sigma", 0.0, 1.0),
    field("d_sigma", 0.0),
    field("c_c", 0.0, 1.0, upper_closed=True),
    field("c1", 0.0, 1.0, lower_closed=True, upper_closed=True),
    field("chi_n", 0.0),
    field("max_log_sigma_change", 0.0, math.inf, upper_closed=True),
)

CMA_RANGES: tuple[Range, ...] = (
    *_COMMON_RANGES,
    field("c_mu", 0.0, 1.0, lower_closed=True, upper_closed=True),
    # to rounding: pycma's default c_mu is min(1 - c1, ...)
    Range("c1 + c_mu", lambda p, xp: xp.asarray(p.c1 + p.c_mu), 0.0, 1.0 + 1e-6, True, True),
)
"""Ranges of CMA-ES params (Hansen's tutorial, Eqs. 54-58; pycma's checks):
``0 < c_sigma < 1``, ``0 < c_c <= 1``, ``c1, c_mu >= 0`` with ``c1 + c_mu <= 1``,
``d_sigma, chi_n, c_m > 0``, finite weights with a positive sum of the positive ones;
``max_log_sigma_change`` may be inf. NaN is out of every range."""

SEP_RANGES: tuple[Range, ...] = (
    *_COMMON_RANGES,
    field("c_mu", 0.0, lower_closed=True),
    Range("c1 + c_mu", lambda p, xp: xp.asarray(p.c1 + p.c_mu), 0.0, 2.0, True, False),
)
"""Ranges of sep-CMA-ES params: as `CMA_RANGES`, but ``c1 + c_mu < 2``. The separable rate
``(n+2)/3 c_cov`` of [RH08] (and cmaes' ``SepCMA``) exceeds ``1 - c1`` for small n or large λ
(n = 10, λ = 100), so the diagonal's decay ``1 - c1 - c_mu`` may be negative, but it must stay
above -1 or the diagonal grows without bound (``c_mu = 5``: NaN after two generations)."""

H_SIGMA_RULES = ("pycma", "tutorial")


def params_schema(
    owner: str, capacity: int, ranges: tuple[Range, ...], ignored: frozenset[str] = frozenset()
) -> hyperparams.Schema:
    """The `CMAParams` schema of a strategy that samples ``max_popsize = capacity`` rows.

    ``weights`` have shape ``(capacity,)``, the other fields are scalars. ``popsize`` is
    set by ``default_params``' own argument (an int32 from 2 to `capacity`); the fields
    in `ignored` are no overrides either (sep-CMA-ES's ``eigen_gap``). `ranges` are the
    strategy's (`CMA_RANGES`, `SEP_RANGES`, ...), to which the range of ``popsize`` is
    added.
    """
    shapes = {f: ((capacity,) if f == "weights" else ()) for f in CMAParams._fields}
    popsize = field("popsize", 2, capacity, lower_closed=True, upper_closed=True)
    return hyperparams.Schema(
        owner,
        CMAParams,
        shapes,
        (*ranges, popsize),
        integers=frozenset({"popsize"}),
        fixed=frozenset({"popsize"}) | ignored,
    )


def default_popsize(num_dims: int) -> int:
    """``4 + floor(3 ln n)`` (Eq. 48)."""
    return 4 + int(math.floor(3 * math.log(num_dims)))


def check_sizes(num_dims: Any, popsize: Any, max_popsize: Any) -> tuple[int, int, int]:
    """A CMA strategy's n, λ and rows per ``ask``, checked.

    Args:
      num_dims: n, an int >= 1.
      popsize: λ, an int >= 2, or None for `default_popsize`.
      max_popsize: rows ``ask`` samples, an int >= λ, or None for λ.

    Returns:
      ``(n, λ, max_popsize)``.

    Raises:
      TypeError: a value that is not an int.
      ValueError: ``num_dims < 1``, ``popsize < 2``, ``max_popsize < popsize``, or a
        population of more than ``2**31 - 1`` numbers.
    """
    n = validation.check_int("num_dims", num_dims, 1)
    lam = default_popsize(n) if popsize is None else validation.check_int("popsize", popsize, 2)
    cap = lam if max_popsize is None else validation.check_int("max_popsize", max_popsize, lam)
    validation.check_rows("popsize" if max_popsize is None else "max_popsize", cap, n)
    return n, lam, cap


def finalize_negative_weights(weights: Any, num_dims: int, c1: Any, c_mu: Any, xp: Any = np) -> Any:
    r"""Scale the negative weights as in the tutorial's Eqs. (50)-(53).

    The negative weights (already summing to -1) are multiplied by
    :math:`\min(\alpha_\mu^-, \alpha_{\mu_{\rm eff}}^-, \alpha_{\rm posdef}^-)` with
    :math:`\alpha_\mu^- = 1 + c_1/c_\mu`,
    :math:`\alpha_{\mu_{\rm eff}}^- = 1 + 2\mu_{\rm eff}^-/(\mu_{\rm eff}+2)` and
    :math:`\alpha_{\rm posdef}^- = (1-c_1-c_\mu)/(n c_\mu)`; pycma's
    ``finalize_negative_weights`` applies the same three limits one after another.
    Works with ``xp = numpy`` or ``jax.numpy`` (traced values) alike.

    Args:
      weights: raw weights of `cma_raw_weights` (negative ones sum to -1).
      num_dims: n.
      c1: rank-one learning rate (Eq. 57).
      c_mu: rank-μ learning rate (Eq. 58); with ``c_mu <= 0`` the weights are returned
        unchanged.
      xp: ``numpy`` or ``jax.numpy``.

    Returns:
      The weights with the negative ones scaled; positive ones unchanged.
    """
    w = xp.asarray(weights)
    neg = w < 0
    wn = xp.where(neg, w, 0.0)
    neg_sum = xp.where(neg.any(), xp.sum(wn), -1.0)
    mueff_minus = neg_sum**2 / xp.where(neg.any(), xp.sum(wn**2), 1.0)
    c_mu_safe = xp.where(c_mu > 0, c_mu, 1.0)
    alpha = xp.minimum(
        xp.minimum(1.0 + c1 / c_mu_safe, 1.0 + 2.0 * mueff_minus / (mueff_of(w, xp) + 2.0)),
        (1.0 - c1 - c_mu) / (num_dims * c_mu_safe),
    )
    return xp.where(neg & (c_mu > 0), w * alpha / -neg_sum, w)


def expected_norm(num_dims: int, exact: bool = True) -> float:
    r"""E‖N(0, I_n)‖ = :math:`\sqrt{2}\,\Gamma(\frac{n+1}{2})/\Gamma(\frac{n}{2})`.

    With ``exact=False``, the tutorial's approximation
    :math:`\sqrt{n}(1 - \frac{1}{4n} + \frac{1}{21 n^2})`. For ``exact=True`` and
    ``n > 100`` pycma's series :math:`\sqrt{n}(1 - \frac{1}{4n} + \frac{1}{32 n^2})` is used,
    which is within 5e-5 relative of the exact value there.
    """
    n = num_dims
    if not exact:
        return math.sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n))
    if n > 100:
        return math.sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (32.0 * n * n))
    return math.sqrt(2.0) * math.exp(math.lgamma((n + 1) / 2.0) - math.lgamma(n / 2.0))


def positive_mueff(weights: Array) -> Array:
    r""":math:`\mu_{\rm eff}` of the positive weights (Eq. 8), traced from the params."""
    return mueff_of(weights, jnp)


class Paths(NamedTuple):
    """Result of `cumulate`: the new paths, the h_sigma indicator and the new step size."""

    p_sigma: Array
    p_c: Array
    h_sigma: Array  # 0.0 or 1.0, in the state's dtype
    sigma: Array


def ranked_steps(
    population: Array, fitness: Array, mean: Array, sigma: Array, params: CMAParams
) -> tuple[Array, Array, Array, Array, Array]:
    """Rank an evaluated population and weight each row by its rank (Eqs. 39, 49).

    Rows from ``params.popsize`` on are padding: they rank after all others (weight 0).
    Rows stay where they were sampled, each with the weight of its rank, so a population
    split over devices is never permuted or gathered (`evojax_cma.sharding`).

    Returns:
      ``(population, order, f_sorted, y, w_row)``: the population as ranked (non-finite
      rows replaced, `evojax_cma.core.shaping.rank_population`), the rows best first,
      their fitness values, the steps ``y = (x - m) / σ`` per row (Eq. 39) and
      ``w_row[i]``, the weight of row ``i``'s rank.
    """
    population, _, order, f_sorted = rank_population(population, fitness, mean, params.popsize)
    y = (population - mean[None, :]) / sigma  # Eq. (39)
    w_row = jnp.zeros_like(params.weights).at[order].set(params.weights)
    return population, order, f_sorted, y, w_row


def cumulate(
    params: Any,
    *,
    p_sigma: Array,
    p_c: Array,
    sigma: Array,
    whitened_y_w: Array,
    y_w: Array,
    mueff: Array,
    generation: Array,
    h_sigma_rule: str,
) -> Paths:
    r"""Update :math:`p_\sigma` (Eq. 43), :math:`h_\sigma`, :math:`p_c` (Eq. 45) and σ (Eq. 44).

    Args:
      params: any params pytree with fields ``c_sigma``, ``c_c``, ``d_sigma``, ``chi_n`` and
        ``max_log_sigma_change``.
      p_sigma: the current conjugate evolution path.
      p_c: the current rank-one evolution path.
      sigma: the current step size.
      whitened_y_w: :math:`C^{-1/2} \langle y\rangle_w` with the factors the population was
        sampled from.
      y_w: the weighted mean step :math:`\langle y\rangle_w` (Eq. 41).
      mueff: variance-effective selection mass of the positive weights (Eq. 8).
      generation: the generation counter *after* this update (1 for the first ``tell``).
      h_sigma_rule: ``"pycma"`` or ``"tutorial"`` (module docstring).

    Returns:
      The new `Paths`.
    """
    n = y_w.shape[-1]
    dtype = y_w.dtype
    cs, cc = params.c_sigma, params.c_c
    p_sigma = (1 - cs) * p_sigma + jnp.sqrt(cs * (2 - cs) * mueff) * whitened_y_w  # Eq. (43)
    bias = 1 - (1 - cs) ** (2 * generation.astype(dtype))
    ps_sq = jnp.sum(p_sigma**2)
    if h_sigma_rule == "pycma":
        h_sigma = ps_sq / bias / n - 1 < 1 + 4.0 / (n + 1)
    else:
        h_sigma = jnp.sqrt(ps_sq / bias) < (1.4 + 2.0 / (n + 1)) * params.chi_n
    h_sigma = h_sigma.astype(dtype)
    p_c = (1 - cc) * p_c + h_sigma * jnp.sqrt(cc * (2 - cc) * mueff) * y_w  # Eq. (45)
    log_change = (cs / params.d_sigma) * (jnp.sqrt(ps_sq) / params.chi_n - 1)  # Eq. (44)
    limit = params.max_log_sigma_change
    sigma = sigma * jnp.exp(jnp.clip(log_change, -limit, limit))
    return Paths(p_sigma=p_sigma, p_c=p_c, h_sigma=h_sigma, sigma=sigma)


__all__ = [
    "ranked_steps",
    "CMA_RANGES",
    "CMAParams",
    "H_SIGMA_RULES",
    "SEP_RANGES",
    "Paths",
    "check_sizes",
    "cma_raw_weights",
    "cumulate",
    "default_popsize",
    "expected_norm",
    "finalize_negative_weights",
    "mueff_of",
    "params_schema",
    "positive_mueff",
]
