r"""Evolution paths and cumulative step-size adaptation shared by the CMA-ES family.

The equations are those of Hansen's tutorial (arXiv:1604.00772), numbered as there; the
full (`evojax_cma.cma_es`) and diagonal (`evojax_cma.sep_cma_es`) variants differ only in
how they whiten a step (:math:`C^{-1/2} y`), which the caller does before calling in.

Two forms of the :math:`h_\sigma` test exist (see the table in `evojax_cma.cma_es`):
``"pycma"`` tests :math:`\|p_\sigma\|^2 / (1-(1-c_\sigma)^{2g}) / n < 2 + 4/(n+1)`, the
tutorial (and cmaes) :math:`\|p_\sigma\| / \sqrt{1-(1-c_\sigma)^{2g}} < (1.4 + 2/(n+1))
E\|N(0,I)\|`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import Array

from evojax_cma.core.shaping import mueff_of

H_SIGMA_RULES = ("pycma", "tutorial")


class Paths(NamedTuple):
    """Result of `cumulate`: the new paths, the h_sigma indicator and the new step size."""

    p_sigma: Array
    p_c: Array
    h_sigma: Array  # 0.0 or 1.0, in the state's dtype
    sigma: Array


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


def positive_mueff(weights: Array) -> Array:
    r""":math:`\mu_{\rm eff}` of the positive weights (Eq. 8), traced from the params."""
    return mueff_of(weights, jnp)
