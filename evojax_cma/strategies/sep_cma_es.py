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
eigen gap       0 (unused: a diagonal C is never decomposed)      same
==============  ===============================================  ===========================

The ``"cmaes"`` preset reproduces the `cmaes` package's ``SepCMA`` (0.13) update for update
(``tests/test_sep_cma.py``). Not implemented: negative (active) weights, which pycma's
``CMA_diagonal=True`` uses together with a multiplicative diagonal update.

The params are `evojax_cma.CMAParams`, as for CMA-ES (``SepCMAParams`` is another name for
them), masked population size included: built with ``max_popsize``, the strategy samples
that many rows and ``params.popsize`` of them form the generation (`MASKED_POPSIZE`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import prng, progress, shaping, termination, validation
from evojax_cma.core.types import DIAGONAL, MASKED_POPSIZE, WEIGHTED, Strategy, build_strategy
from evojax_cma.strategies.cma_family import (
    SEP_RANGES,
    CMAParams,
    check_sizes,
    cumulate,
    expected_norm,
    mueff_of,
    params_schema,
    positive_mueff,
    ranked_steps,
)

SEP_PRESETS = ("ros_hansen", "cmaes")


SepCMAParams = CMAParams
"""Another name for `CMAParams`, the params of sep-CMA-ES (which ignores ``eigen_gap``).

Kept so that ``isinstance`` checks and ``params._replace(...)`` written when sep-CMA-ES
had its own type still work. Building one field by field now also needs ``eigen_gap``
and ``popsize`` (use ``strategy.default_params(**overrides)``), ``weights`` has the
strategy's ``max_popsize`` rows, and sep-CMA-ES checkpoints saved before the change do
not load."""


@progress.pytree_state
@dataclasses.dataclass(frozen=True, eq=False)
class SepCMAState(progress.RunState):
    """State of one sep-CMA-ES run (mean, σ, `CMAParams` and bookkeeping: see `RunState`).

    Attributes:
      C: the diagonal of the covariance matrix, shape ``(n,)``.
      p_sigma, p_c: evolution paths (Eqs. 43, 45).
      params: the `CMAParams` of this run.
    """

    C: Array
    p_sigma: Array
    p_c: Array


def sep_default_constants(
    num_dims: int,
    popsize: Any,
    preset: str,
    capacity: int | None = None,
    xp: Any = np,
    **overrides: Any,
) -> dict[str, Any]:
    """Default hyperparameters of a preset for λ = `popsize` (module table).

    With ``xp = numpy`` (the default) the values are float64 NumPy values; with
    ``xp = jax.numpy`` `popsize` and the `overrides` may be traced. The weights have
    `capacity` entries (default λ), zero from μ = floor(λ/2) on; ``eigen_gap`` is 0.

    Each override (a `CMAParams` field but ``popsize`` and ``eigen_gap``; concrete or
    traced) replaces its default; ``c_sigma`` also enters the default ``d_sigma``
    (Eq. 55). ``weights`` are used as given.
    """

    def pick(name: str, default: Any) -> Any:
        return overrides[name] if name in overrides else default

    if preset not in SEP_PRESETS:
        raise ValueError(f"preset must be one of {SEP_PRESETS}, got {preset!r}")
    n, lam = num_dims, popsize
    mu = lam // 2
    i = xp.arange(1, (lam if capacity is None else capacity) + 1) * (
        np.float64(1.0) if xp is np else 1.0
    )
    weights = xp.where(i <= mu, xp.log(mu + 1.0) - xp.log(i), 0.0)
    weights = weights / xp.sum(weights)
    mueff = mueff_of(weights, xp)
    c_cov = 2.0 / mueff / (n + math.sqrt(2.0)) ** 2 + (1.0 - 1.0 / mueff) * xp.minimum(
        1.0, (2.0 * mueff - 1.0) / ((n + 2.0) ** 2 + mueff)
    )
    c_cov = c_cov * ((n + 2.0) / 3.0)  # [RH08], the separable learning rate
    if preset == "ros_hansen":
        c1, c_mu = c_cov / mueff, c_cov * (1.0 - 1.0 / mueff)
    else:
        c1, c_mu = 2.0 / ((n + 1.3) ** 2 + mueff), c_cov
    c_sigma = pick("c_sigma", (mueff + 2.0) / (n + mueff + 3.0))
    d_sigma = 1.0 + 2.0 * xp.maximum(0.0, xp.sqrt((mueff - 1.0) / (n + 1.0)) - 1.0) + c_sigma
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
        eigen_gap=0.0,
        popsize=lam,
    )


def sep_cma_es(
    num_dims: int,
    popsize: int | None = None,
    *,
    max_popsize: int | None = None,
    **static_options: Any,
) -> Strategy:
    """Build a sep-CMA-ES strategy (minimisation) with a diagonal covariance matrix.

    Its interface is that of `evojax_cma.cma_es` (params, masked λ); its update is the
    module docstring's.

    Args:
      num_dims: n.
      popsize: λ (default ``4 + floor(3 ln n)``).
      max_popsize: rows sampled by ``ask`` (default λ); λ is then ``params.popsize``, so
        one strategy serves (and a vmapped sweep covers) several population sizes, as
        for `evojax_cma.cma_es`.
      **static_options: ``preset`` (``"ros_hansen"``, the default, or ``"cmaes"``; module
        docstring) and default termination thresholds under pycma's names.

    Returns:
      A `Strategy` with `CMAParams` and `SepCMAState` whose ``popsize`` is `max_popsize`;
      time and memory per generation are O(`max_popsize` n). Its
      ``default_params(popsize=None, **overrides)`` re-derives what depends on an
      override (`sep_default_constants`).

    Raises:
      TypeError, ValueError: sizes out of range (`cma_family.check_sizes`), unknown
        option names, or an unknown preset.

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.sep_cma_es(30)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(30), 1.0,
      ...                   options={"ftarget": 1e-8})
      >>> bool(res.state.best_f <= 1e-8)
      True
    """
    n, lam, cap = check_sizes(num_dims, popsize, max_popsize)
    validation.check_options(
        "sep_cma_es option(s)", static_options, {"preset"} | set(termination.STOP_NAMES)
    )
    preset = static_options.get("preset", "ros_hansen")
    sep_default_constants(n, lam, preset)  # validate the preset now
    stop_defaults = {k: v for k, v in static_options.items() if k in termination.STOP_NAMES}
    schema = params_schema("sep_cma_es", cap, SEP_RANGES, ignored=frozenset({"eigen_gap"}))
    check_params = schema.check

    def derive(size: Any, xp: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        return sep_default_constants(n, size, preset, cap, xp, **overrides)

    def default_params(popsize: Any = None, **overrides: Any) -> CMAParams:
        """The preset's `CMAParams` for λ = `popsize` (default: the strategy's λ).

        Args:
          popsize: λ, from 2 to the strategy's ``max_popsize``; may be a traced integer.
          **overrides: values (concrete or traced) for any field but ``popsize`` and
            ``eigen_gap`` (which sep-CMA-ES ignores); what depends on an override is
            re-derived (`sep_default_constants`).

        Raises:
          TypeError: an unknown override name (the message lists the valid ones).
          ValueError: ``popsize`` out of range, a wrong shape, NaN, or a concrete value
            out of range.
        """
        return schema.masked_defaults(derive, popsize, lam, cap, overrides)

    def init(key: Array, x0: Any, sigma0: Any, params: CMAParams | None = None) -> SepCMAState:
        """Start at mean `x0` with step size `sigma0` and C = I (`key` is unused)."""
        del key
        p: CMAParams = check_params(default_params() if params is None else params)
        p = p._replace(popsize=jnp.asarray(p.popsize, jnp.int32))
        fields = progress.initial_fields(x0, sigma0, p, n, lam)
        zero = jnp.zeros(n, fields["mean"].dtype)
        return SepCMAState(C=jnp.ones_like(zero), p_sigma=zero, p_c=zero, **fields)

    def ask(key: Array, state: SepCMAState, *, running: Any = True) -> tuple[Array, SepCMAState]:
        """Sample `max_popsize` points ``m + σ sqrt(c) ⊙ z`` (Eqs. 38-40, a diagonal C)."""
        del running  # nothing is amortised here
        validation.check_key(key)
        validation.check_state("sep_cma_es.ask", state, SepCMAState, CMAParams)
        z = prng.normal(key, (cap, n), state.mean.dtype)
        return state.mean[None, :] + state.sigma * (z * jnp.sqrt(state.C)[None, :]), state

    def tell(state: SepCMAState, population: Any, fitness: Any) -> SepCMAState:
        """Update mean, paths, σ and the diagonal of C from the evaluated population.

        Rows from ``params.popsize`` on are padding: they rank after all others and get
        weight 0.
        """
        validation.check_state("sep_cma_es.tell", state, SepCMAState, CMAParams)
        validation.check_population("population", population, (cap, n))
        p = state.params
        population, order, f_sorted, y, w_row = ranked_steps(
            population, fitness, state.mean, state.sigma, p
        )
        w, w_row = jnp.maximum(p.weights, 0.0), jnp.maximum(w_row, 0.0)  # no active update
        y_w = w_row @ y  # Eq. (41)
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
        C = decay * state.C + p.c1 * paths.p_c**2 + p.c_mu * (w_row @ y**2)  # Eq. (47), diagonal
        mean = state.mean + p.c_m * state.sigma * y_w  # Eq. (42)
        # Keep every coordinate's step resolvable at the new mean: a step below eps |m_i|
        # rounds to y_i = 0, which shrinks p_sigma, sigma and C_i further (until 0/0).
        eps = jnp.finfo(mean.dtype).eps
        C = jnp.maximum(C, (eps * jnp.abs(mean) / paths.sigma) ** 2 + jnp.finfo(mean.dtype).tiny)
        return SepCMAState(
            mean=mean,
            sigma=paths.sigma,
            p_sigma=paths.p_sigma,
            p_c=paths.p_c,
            C=C,
            params=p,
            **progress.next_progress(
                state, shaping.select_row(population, order[0]), f_sorted, p.popsize
            ),
        )

    def summary(state: SepCMAState) -> termination.DistributionSummary:
        """What termination and the drivers read from a `SepCMAState`."""
        return termination.diagonal_summary(
            state.mean, state.sigma, state.sigma0, jnp.sqrt(state.C), state.p_c
        )

    functions: dict[str, Callable[..., Any]] = dict(
        default_params=default_params, init=init, ask=ask, tell=tell, summary=summary
    )
    return build_strategy(
        "sep_cma_es",
        n,
        cap,
        {"preset": preset, "popsize": lam, "max_popsize": cap},
        stop_defaults,
        {**functions, "check_params": check_params},
        {DIAGONAL, WEIGHTED, MASKED_POPSIZE},
        popsize_of=lambda state: state.params.popsize,
        params_ok=schema.ok,
    )
