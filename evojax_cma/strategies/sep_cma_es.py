r"""sep-CMA-ES: CMA-ES with a diagonal covariance matrix, O(n) time and memory per sample.

Reference:
  R. Ros, N. Hansen. A Simple Modification in CMA-ES Achieving Linear Time and Space
  Complexity. PPSN X, LNCS 5199, 2008. ``[RH08]`` below.
  Equation numbers ``Eq. (n)`` refer to Hansen's tutorial (arXiv:1604.00772), whose
  equations sep-CMA-ES restricts to the diagonal, as `evojax_cma.cma_es` documents.

Only the diagonal of C is kept: sampling is ``m + σ sqrt(c) ⊙ z`` and the update of
Eq. (47) is applied to the diagonal alone (``y y^T`` becomes ``y ⊙ y``). Because a diagonal
model has only n free parameters, [RH08] raises the learning rate of the covariance by
``(n + 2) / 3``, which is what makes it faster than full CMA-ES on separable functions.

Two presets fix the constants (the equations are the same):

==============  ===============================================  ===========================
quantity        ``"ros_hansen"`` (default, [RH08])                ``"cmaes"`` (cmaes SepCMA)
==============  ===============================================  ===========================
weights         ``ln(μ+1) - ln i``, i <= μ = floor(λ/2), sum 1    same
c_cov           ``(n+2)/3 [2/(μ_eff (n+√2)^2) + (1 - 1/μ_eff)``   same
                ``min(1, (2μ_eff - 1)/((n+2)^2 + μ_eff))]``
c_1             ``c_cov / μ_eff``                                 ``2 / ((n+1.3)^2 + μ_eff)``
c_μ             ``c_cov (1 - 1/μ_eff)``                           ``c_cov``
c_σ             ``(μ_eff + 2) / (n + μ_eff + 3)``                 same
d_σ             ``1 + 2 max(0, sqrt((μ_eff-1)/(n+1)) - 1) + c_σ``  same
c_c             ``4 / (n + 4)``                                   same
E‖N(0,I)‖       ``sqrt(n)(1 - 1/(4n) + 1/(21 n^2))``              same
h_σ test        tutorial form (`evojax_cma.strategies.cma_family`) same
==============  ===============================================  ===========================

The ``"cmaes"`` preset reproduces the `cmaes` package's ``SepCMA`` (0.13) update for update
(``tests/test_sep_cma.py``). Not implemented: negative (active) weights, which pycma's
``CMA_diagonal=True`` uses together with a multiplicative diagonal update.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import hyperparams, progress, shaping, termination, validation
from evojax_cma.core.types import DIAGONAL, WEIGHTED, Strategy, build_strategy
from evojax_cma.strategies.cma_family import (
    SEP_RANGES,
    cumulate,
    default_popsize,
    expected_norm,
    mueff_of,
    positive_mueff,
)

SEP_PRESETS = ("ros_hansen", "cmaes")


class SepCMAParams(NamedTuple):
    """Numeric hyperparameters of sep-CMA-ES (arrays; vmap over any of them).

    The fields have the meaning of `evojax_cma.CMAParams`' fields of the same name,
    restricted to the diagonal; their defaults are the preset's (module table).
    """

    weights: Array
    """Recombination weights ``(λ,)``, positive for the μ best, zero after (Eq. 49)."""
    c_m: Array
    """Learning rate of the mean (Eq. 41; 1)."""
    c_sigma: Array
    """Cumulation rate of the σ path (Eqs. 43, 55)."""
    d_sigma: Array
    """Damping of the step-size update (Eqs. 44, 55)."""
    c_c: Array
    """Cumulation rate of the rank-one path (Eqs. 45, 56)."""
    c1: Array
    """Rank-one learning rate of the diagonal, raised by ``(n+2)/3`` [RH08]."""
    c_mu: Array
    """Rank-μ learning rate of the diagonal, raised by ``(n+2)/3`` [RH08]."""
    chi_n: Array
    """E‖N(0, I)‖ of Eq. (44)."""
    max_log_sigma_change: Array
    """Bound on ``|log(σ_new/σ)|`` per generation (inf: none, as [RH08])."""


@progress.pytree_state
@dataclasses.dataclass(frozen=True, eq=False)
class SepCMAState(progress.RunState):
    """State of one sep-CMA-ES run (mean, σ, `SepCMAParams` and bookkeeping: see `RunState`).

    Attributes:
      C: the diagonal of the covariance matrix, shape ``(n,)``.
      p_sigma, p_c: evolution paths (Eqs. 43, 45).
      params: the `SepCMAParams` of this run.
    """

    C: Array
    p_sigma: Array
    p_c: Array


def sep_default_constants(
    num_dims: int, popsize: int, preset: str, **overrides: Any
) -> dict[str, Any]:
    """Default hyperparameters of a preset as float64 NumPy values (module table).

    Each override (a `SepCMAParams` field; concrete or traced) replaces its default;
    ``c_sigma`` also enters the default ``d_sigma`` (Eq. 55). ``weights`` are used as given.
    """

    def pick(name: str, default: Any) -> Any:
        return overrides[name] if name in overrides else default

    if preset not in SEP_PRESETS:
        raise ValueError(f"preset must be one of {SEP_PRESETS}, got {preset!r}")
    n, lam = num_dims, popsize
    mu = lam // 2
    weights = np.zeros(lam)
    weights[:mu] = np.log(mu + 1.0) - np.log(np.arange(1, mu + 1))
    weights /= weights.sum()
    mueff = mueff_of(weights)
    c_cov = 2.0 / mueff / (n + math.sqrt(2.0)) ** 2 + (1.0 - 1.0 / mueff) * min(
        1.0, (2.0 * mueff - 1.0) / ((n + 2.0) ** 2 + mueff)
    )
    c_cov *= (n + 2.0) / 3.0  # [RH08], the separable learning rate
    if preset == "ros_hansen":
        c1, c_mu = c_cov / mueff, c_cov * (1.0 - 1.0 / mueff)
    else:
        c1, c_mu = 2.0 / ((n + 1.3) ** 2 + mueff), c_cov
    c_sigma = pick("c_sigma", (mueff + 2.0) / (n + mueff + 3.0))
    d_sigma = 1.0 + 2.0 * max(0.0, math.sqrt((mueff - 1.0) / (n + 1.0)) - 1.0) + c_sigma
    return dict(
        weights=pick("weights", weights),
        c_m=pick("c_m", 1.0),
        c_sigma=c_sigma,
        d_sigma=pick("d_sigma", d_sigma),
        c_c=pick("c_c", 4.0 / (n + 4.0)),
        c1=pick("c1", c1),
        c_mu=pick("c_mu", c_mu),
        chi_n=pick("chi_n", expected_norm(n, exact=False)),
        max_log_sigma_change=pick("max_log_sigma_change", math.inf),
    )


def sep_cma_es(num_dims: int, popsize: int | None = None, **static_options: Any) -> Strategy:
    """Build a sep-CMA-ES strategy (minimisation) with a diagonal covariance matrix.

    Args:
      num_dims: dimension n, >= 1.
      popsize: λ, >= 2; defaults to ``4 + floor(3 ln n)``.
      **static_options: ``preset`` (``"ros_hansen"``, the default, or ``"cmaes"``; module
        docstring) and default termination thresholds under pycma's names.

    Returns:
      A `Strategy` with `SepCMAParams` and `SepCMAState`; time and memory per generation
      are O(λ n).

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.sep_cma_es(30)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(30), 1.0,
      ...                   options={"ftarget": 1e-8})
      >>> bool(res.state.best_f <= 1e-8)
      True
    """
    n = validation.check_int("num_dims", num_dims, 1)
    lam = default_popsize(n) if popsize is None else validation.check_int("popsize", popsize, 2)
    validation.check_rows("popsize", lam, n)
    validation.check_options(
        "sep_cma_es option(s)", static_options, {"preset"} | set(termination.STOP_NAMES)
    )
    preset = static_options.get("preset", "ros_hansen")
    sep_default_constants(n, lam, preset)  # validate the preset now
    stop_defaults = {k: v for k, v in static_options.items() if k in termination.STOP_NAMES}
    shapes = {f: ((lam,) if f == "weights" else ()) for f in SepCMAParams._fields}
    schema = hyperparams.Schema("sep_cma_es", SepCMAParams, shapes, SEP_RANGES)

    default_params = schema.default_params(
        lambda overrides: sep_default_constants(n, lam, preset, **overrides)
    )
    check_params = schema.check

    def init(key: Array, x0: Any, sigma0: Any, params: SepCMAParams | None = None) -> SepCMAState:
        """Start at mean `x0` with step size `sigma0` and C = I (`key` is unused)."""
        del key
        params = check_params(default_params() if params is None else params)
        fields = progress.initial_fields(x0, sigma0, params, n, lam)
        zero = jnp.zeros(n, fields["mean"].dtype)
        return SepCMAState(C=jnp.ones_like(zero), p_sigma=zero, p_c=zero, **fields)

    def ask(key: Array, state: SepCMAState, *, running: Any = True) -> tuple[Array, SepCMAState]:
        """Sample λ points ``m + σ sqrt(c) ⊙ z`` (Eqs. 38-40 with a diagonal C)."""
        del running  # nothing is amortised here
        validation.check_key(key)
        validation.check_state("sep_cma_es.ask", state, SepCMAState, SepCMAParams)
        z = jax.random.normal(key, (lam, n), state.mean.dtype)
        return state.mean[None, :] + state.sigma * (z * jnp.sqrt(state.C)[None, :]), state

    def tell(state: SepCMAState, population: Any, fitness: Any) -> SepCMAState:
        """Update mean, paths, σ and the diagonal of C from the evaluated population."""
        validation.check_state("sep_cma_es.tell", state, SepCMAState, SepCMAParams)
        validation.check_population("population", population, (lam, n))
        p = state.params
        population, _, order, f_sorted = shaping.rank_population(population, fitness, state.mean)
        y = (population[order] - state.mean[None, :]) / state.sigma  # Eq. (39)
        w = jnp.maximum(p.weights, 0.0)
        y_w = w @ y  # Eq. (41)
        paths = cumulate(
            p,
            p_sigma=state.p_sigma,
            p_c=state.p_c,
            sigma=state.sigma,
            whitened_y_w=y_w / jnp.sqrt(state.C),
            y_w=y_w,
            mueff=positive_mueff(p.weights),
            generation=state.generation + 1,
            h_sigma_rule="tutorial",
        )
        delta_h = (1 - paths.h_sigma) * p.c_c * (2 - p.c_c)
        decay = 1 + p.c1 * delta_h - p.c1 - p.c_mu * jnp.sum(w)
        C = decay * state.C + p.c1 * paths.p_c**2 + p.c_mu * (w @ y**2)  # Eq. (47), diagonal
        mean = state.mean + p.c_m * state.sigma * y_w  # Eq. (42)
        # Keep every coordinate's step resolvable at the new mean: a step below eps |m_i|
        # rounds to y_i = 0, which shrinks p_sigma, sigma and C_i further (until 0/0).
        eps = jnp.finfo(mean.dtype).eps
        C = jnp.maximum(C, (eps * jnp.abs(mean) / paths.sigma) ** 2 + jnp.finfo(mean.dtype).tiny)
        return SepCMAState(
            mean=mean,
            sigma=paths.sigma,
            C=C,
            p_sigma=paths.p_sigma,
            p_c=paths.p_c,
            params=p,
            **progress.next_progress(state, population[order[0]], f_sorted),
        )

    def summary(state: SepCMAState) -> termination.DistributionSummary:
        """What termination and the drivers read from a `SepCMAState`."""
        return termination.diagonal_summary(
            state.mean, state.sigma, state.sigma0, jnp.sqrt(state.C), state.p_c
        )

    functions: dict[str, Callable[..., Any]] = dict(
        default_params=default_params, init=init, ask=ask, tell=tell, summary=summary
    )
    functions["check_params"] = check_params
    options = {"preset": preset}
    return build_strategy(
        "sep_cma_es",
        n,
        lam,
        options,
        stop_defaults,
        functions,
        {DIAGONAL, WEIGHTED},
        params_ok=schema.ok,
    )
