r"""CMA-ES with active covariance update, CSA and lazy eigendecomposition.

References:
  N. Hansen. The CMA Evolution Strategy: A Tutorial. arXiv:1604.00772 (2016/2023).
  Equation numbers ``Eq. (n)`` below refer to this tutorial.
  G. A. Jastrebski, D. V. Arnold. Improving evolution strategies through active covariance
  matrix adaptation. CEC 2006.
  N. Hansen et al. pycma 4.5, ``cma.CMAEvolutionStrategy`` (defaults of the ``"pycma"``
  preset).

Two presets fix the default constants; the update equations are the same:

==================  =======================================  ===========================
quantity            ``"pycma"`` (default, pycma 4.5)          ``"tutorial"`` (= cmaes)
==================  =======================================  ===========================
:math:`c_1`         ``min(1, λ/6) 2 / ((n+1.3)^2 + μ_eff)``   ``2 / ((n+1.3)^2 + μ_eff)``
:math:`c_\mu`       ``2 (0.25 + μ_eff - 2 + 1/μ_eff) / ...``  ``2 (μ_eff - 2 + 1/μ_eff) /``
                                                              ``((n+2)^2 + μ_eff)``
:math:`c_\sigma`    ``min(0.5, (μ_eff+2)/(n+μ_eff+3))``       ``(μ_eff+2)/(n+μ_eff+5)``
:math:`d_\sigma`    ``1 + 2 max(0, d' sqrt((μ_eff-1)/(n+1))``  ``1 + 2 max(0,``
                    ``- 1) + c_σ``, ``d' = max(1, 3(1 -``      ``sqrt((μ_eff-1)/(n+1)) - 1)``
                    ``2^(-n/9)))``                             ``+ c_σ`` (Eq. 55)
E‖N(0,I)‖           exact (Gamma function) for n <= 100       ``sqrt(n)(1 - 1/(4n)``
                                                              ``+ 1/(21 n^2))``
h_σ test            ``‖p_σ‖² / (1-(1-c_σ)^{2g}) / n``          ``‖p_σ‖ / sqrt(1-(1-c_σ)^{2g})``
                    ``< 2 + 4/(n+1)``                         ``< (1.4 + 2/(n+1)) E‖N‖``
C at start          ``diag(exp(1e-4 i / n))``                 ``I``
log σ change        clipped to ``[-1, 1]``                    not clipped
eigen gap           ``1 / (c_1 + c_μ) / n / 10`` generations  0 (every generation)
active update norm  ``n / (‖C^{-1/2} y‖ + 1e-9)^2``           ``n / (‖C^{-1/2} y‖^2 + 1e-8)``
==================  =======================================  ===========================

Both presets share :math:`c_c = (4 + μ_eff/n) / (n + 4 + 2 μ_eff/n)` (Eq. 56), the weights
of Eqs. (49)-(53) and :math:`c_m = 1`. With tutorial constants an otherwise identical
CMA-ES needs about 15 % more evaluations than pycma at λ = 100. Not implemented from pycma:
mirrored sampling for λ < 6 (pycma's default there; its damping term is taken as without
mirrors), ``conditioncov_alleviate`` and the other optional extras.

The params type (`CMAParams`), the weights, E‖N‖, the default λ and the evolution paths
are shared with sep-CMA-ES in `evojax_cma.strategies.cma_family`. This module is longer
than the project's ~400 lines on purpose: the preset table, the constants it documents
(with their re-derivation under overrides) and the update equations are one reading
unit; the init/ask/tell functions are module-level and the factory only binds them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import hyperparams, prng, progress, shaping, termination, validation
from evojax_cma.core.linalg import refresh_eigensystem
from evojax_cma.core.types import COVARIANCE, MASKED_POPSIZE, WEIGHTED, Strategy, build_strategy
from evojax_cma.strategies.cma_family import (
    CMA_RANGES,
    CMAParams,
    check_sizes,
    cumulate,
    expected_norm,
    finalize_negative_weights,
    params_schema,
    positive_mueff,
    ranked_steps,
)

PRESETS = ("pycma", "tutorial")


@progress.pytree_state
@dataclasses.dataclass(frozen=True, eq=False)
class CMAState(progress.RunState):
    """State of one CMA-ES run.

    Besides mean m, step size σ, the `CMAParams` and the bookkeeping of
    `evojax_cma.core.progress.RunState`:

    Attributes:
      C: covariance matrix.
      B: eigenvectors of C (columns) at the last decomposition.
      D: square roots of the eigenvalues of C, ascending, at the last decomposition.
      p_sigma: conjugate evolution path for CSA.
      p_c: evolution path for the rank-one update.
      eigen_generation: value of ``generation`` at the last decomposition.
      params: the `CMAParams` of this run.
    """

    C: Array
    B: Array
    D: Array
    p_sigma: Array
    p_c: Array
    eigen_generation: Array


def default_constants(
    num_dims: int,
    popsize: Any,
    preset: str = "pycma",
    active: bool = True,
    capacity: int | None = None,
    xp: Any = np,
    **overrides: Any,
) -> dict[str, Any]:
    """Default hyperparameters (see the module table) for λ = `popsize`.

    With ``xp = numpy`` (the default) the values are float64 NumPy scalars and arrays; with
    ``xp = jax.numpy`` `popsize` and the `overrides` may be traced (restarts change λ inside
    ``jit``; sweeps vmap over c1). The weights have `capacity` entries (default λ), zero
    from λ on.

    Each override (a `CMAParams` field other than ``popsize``) replaces its default, and
    the defaults derived from it are derived from the override instead: ``c1`` caps the
    default ``c_mu`` at ``1 - c1``; ``c1`` and ``c_mu`` set the negative weights
    (Eqs. 50-53) and, for ``"pycma"``, ``eigen_gap = 1/(c1 + c_mu)/n/10``; ``c_sigma``
    enters ``d_sigma`` (Eq. 55). ``weights`` are used as given (the other constants keep
    the values derived from the default weights).
    """
    n, lam = num_dims, popsize

    def pick(name: str, default: Any) -> Any:
        return overrides[name] if name in overrides else default

    raw = shaping.cma_raw_weights(lam, capacity, xp)  # Eq. (49)
    mueff = shaping.mueff_of(raw, xp)  # Eq. (8)
    if preset == "pycma":
        c1 = pick("c1", xp.minimum(1.0, lam / 6.0) * 2.0 / ((n + 1.3) ** 2 + mueff))
        c_mu = pick(
            "c_mu",
            xp.minimum(1.0 - c1, 2.0 * (0.25 + mueff - 2.0 + 1.0 / mueff) / ((n + 2) ** 2 + mueff)),
        )
        c_sigma = pick("c_sigma", xp.minimum(0.5, (mueff + 2.0) / (n + mueff + 3.0)))
        d_eff = max(1.0, 3.0 * (1.0 - 0.5 ** (n / 9.0)))
        d_sigma = 1.0 + 2.0 * xp.maximum(0.0, d_eff * xp.sqrt((mueff - 1.0) / (n + 1.0)) - 1.0)
        chi_n = expected_norm(n, exact=True)
        max_log = 1.0
        eigen_gap = pick("eigen_gap", 1.0 / (c1 + c_mu + 1e-23) / n / 10.0)
    elif preset == "tutorial":
        c1 = pick("c1", 2.0 / ((n + 1.3) ** 2 + mueff))  # Eq. (57)
        c_mu = pick(
            "c_mu", xp.minimum(1.0 - c1, 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((n + 2) ** 2 + mueff))
        )  # Eq. (58)
        c_sigma = pick("c_sigma", (mueff + 2.0) / (n + mueff + 5.0))  # Eq. (55)
        d_sigma = 1.0 + 2.0 * xp.maximum(0.0, xp.sqrt((mueff - 1.0) / (n + 1.0)) - 1.0)
        chi_n = expected_norm(n, exact=False)
        max_log = math.inf
        eigen_gap = pick("eigen_gap", 0.0)
    else:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    d_sigma = pick("d_sigma", d_sigma + c_sigma)  # Eq. (55)
    c_c = (4.0 + mueff / n) / (n + 4.0 + 2.0 * mueff / n)  # Eq. (56)
    if "weights" in overrides:
        weights = overrides["weights"]
    elif active:
        weights = finalize_negative_weights(raw, n, c1, c_mu, xp)  # Eqs. (50)-(53)
    else:
        weights = xp.where(raw > 0, raw, 0.0)
    return dict(
        weights=weights,
        c_m=pick("c_m", 1.0),
        c_sigma=c_sigma,
        d_sigma=d_sigma,
        c_c=pick("c_c", c_c),
        c1=c1,
        c_mu=c_mu,
        chi_n=pick("chi_n", chi_n),
        max_log_sigma_change=pick("max_log_sigma_change", max_log),
        eigen_gap=eigen_gap,
        popsize=lam,
    )


class _Setup(NamedTuple):
    """The static configuration the module-level functions below are bound to."""

    num_dims: int
    popsize: int  # default λ
    capacity: int  # rows sampled by ask (max_popsize)
    preset: str
    active: bool


def _default_params(setup: _Setup, popsize: Any = None, **overrides: Any) -> CMAParams:
    """The preset's hyperparameters for λ = `popsize` (default: the strategy's λ).

    Args:
      setup: the strategy's static configuration (bound by `cma_es`).
      popsize: λ, from 2 to the strategy's ``max_popsize``; may be a traced integer.
      **overrides: values for any `CMAParams` field but ``popsize`` (``c1=``, ``c_mu=``,
        ``c_sigma=``, ``d_sigma=``, ``weights=``, ...), concrete or traced; what depends on
        an override is re-derived (`default_constants`), so
        ``jax.vmap(lambda c1: es.default_params(c1=c1))(c1s)`` sweeps c1 with consistent
        negative weights and eigen gap.

    Returns:
      `CMAParams` of JAX's default float dtype (``popsize`` an int32). Concrete inputs are
      computed in float64 NumPy, traced ones in JAX.

    Raises:
      TypeError: an unknown override name (the message lists the valid ones).
      ValueError: ``popsize`` out of range, an override of the wrong shape or NaN, or
        concrete params outside their ranges (`_check_params`).
    """
    n, cap = setup.num_dims, setup.capacity

    def derive(size: Any, xp: Any, given: dict[str, Any]) -> dict[str, Any]:
        return default_constants(n, size, setup.preset, setup.active, cap, xp, **given)

    return _schema(cap).masked_defaults(derive, popsize, setup.popsize, cap, overrides)


def _schema(capacity: int) -> hyperparams.Schema:
    """The `CMAParams` schema for ``max_popsize = capacity``.

    Every field but ``popsize`` may be overridden. Ranges: `CMA_RANGES` and CMA-ES's own,
    ``eigen_gap >= 0`` and ``2 <= popsize <= max_popsize``.
    """
    eigen_gap = validation.field("eigen_gap", 0.0, math.inf, lower_closed=True, upper_closed=True)
    return params_schema("cma_es", capacity, (*CMA_RANGES, eigen_gap))


def _check_params(setup: _Setup, params: Any) -> CMAParams:
    """Require `CMAParams` of this strategy's shapes with concrete values in range.

    Raises:
      TypeError: not a `CMAParams`.
      ValueError: a wrong shape, or a concrete value outside its range (`CMA_RANGES`,
        ``eigen_gap >= 0``, ``2 <= popsize <= max_popsize``; NaN included).
    """
    return _schema(setup.capacity).check(params)


def _init(
    setup: _Setup, key: Array, x0: Any, sigma0: Any, params: CMAParams | None = None
) -> CMAState:
    """Start a run at mean `x0` with step size `sigma0`.

    `key` is accepted for a uniform interface (CMA-ES needs no randomness here). The
    dtype of the state is that of `x0` if floating, else JAX's default float. Params are
    checked by `_check_params` (values where concrete).
    """
    del key
    n = setup.num_dims
    if params is None:
        params = _default_params(setup)
    _check_params(setup, params)
    params = params._replace(popsize=jnp.asarray(params.popsize, jnp.int32))
    fields = progress.initial_fields(x0, sigma0, params, n, setup.popsize)
    dtype = fields["mean"].dtype
    if setup.preset == "pycma":
        diag = jnp.asarray(np.exp(1e-4 * np.arange(n) / n), dtype)
    else:
        diag = jnp.ones(n, dtype)
    zero = jnp.zeros(n, dtype)
    return CMAState(
        C=jnp.diag(diag),
        B=jnp.eye(n, dtype=dtype),
        D=jnp.sqrt(diag),
        p_sigma=zero,
        p_c=zero,
        eigen_generation=jnp.asarray(0, jnp.int32),
        **fields,
    )


def _ask(
    setup: _Setup, key: Array, state: CMAState, *, running: Any = True
) -> tuple[Array, CMAState]:
    """Sample λ points ``m + σ B (D * z)``, z ~ N(0, I) (Eqs. 38-40).

    C is decomposed first when ``eigen_gap`` generations have passed since the last
    decomposition, as pycma's lazy update does (``running=False`` skips it).
    """
    validation.check_key(key)
    validation.check_state("cma_es.ask", state, CMAState, CMAParams)
    g, g_eig = state.generation, state.eigen_generation
    need = (g > g_eig) & ((g - g_eig).astype(state.sigma.dtype) >= state.params.eigen_gap)
    need = need & jnp.asarray(running, bool)
    C, B, D = refresh_eigensystem(need, state.C, state.B, state.D)
    state = state._replace(C=C, B=B, D=D, eigen_generation=jnp.where(need, g, g_eig))
    z = prng.normal(key, (setup.capacity, setup.num_dims), state.mean.dtype)
    population = state.mean[None, :] + state.sigma * ((z * D[None, :]) @ B.T)
    return population, state


def _tell(setup: _Setup, state: CMAState, population: Any, fitness: Any) -> CMAState:
    """Update the distribution from the evaluated population (minimisation).

    The population is taken as evaluated: points may have been repaired or injected
    after ``ask``. Non-finite fitness ranks worst (`evojax_cma.core.shaping`).
    """
    n, cap = setup.num_dims, setup.capacity
    validation.check_state("cma_es.tell", state, CMAState, CMAParams)
    validation.check_population("population", population, (cap, n))
    p = state.params
    population, order, f_sorted, y, w_row = ranked_steps(
        population, fitness, state.mean, state.sigma, p
    )
    w = p.weights
    y_w = jnp.maximum(w_row, 0.0) @ y  # Eq. (41)
    mean = state.mean + p.c_m * state.sigma * y_w  # Eq. (42)

    # C^{-1/2} v = B D^{-1} B^T v with the factors of the last decomposition.
    def whiten(v: Array) -> Array:
        return (v @ state.B) / jnp.reshape(state.D, (1,) * (v.ndim - 1) + (n,))

    paths = cumulate(
        p,
        p_sigma=state.p_sigma,
        p_c=state.p_c,
        sigma=state.sigma,
        whitened_y_w=whiten(y_w) @ state.B.T,
        y_w=y_w,
        mueff=positive_mueff(w),
        generation=state.generation + 1,
        h_sigma_rule=setup.preset,
    )
    h_sigma, p_c, cc = paths.h_sigma, paths.p_c, p.c_c

    mahalanobis_sq = jnp.sum(whiten(y) ** 2, axis=1)
    if setup.preset == "pycma":
        rescale = n / (jnp.sqrt(mahalanobis_sq) + 1e-9) ** 2
    else:
        rescale = n / (mahalanobis_sq + 1e-8)
    w_circ = jnp.where(w_row >= 0, w_row, w_row * rescale)  # Eq. (46)
    delta_h = (1 - h_sigma) * cc * (2 - cc)
    decay = 1 + p.c1 * delta_h - p.c1 - p.c_mu * jnp.sum(w)
    C = (
        decay * state.C + p.c1 * jnp.outer(p_c, p_c) + p.c_mu * ((y.T * w_circ[None, :]) @ y)
    )  # Eq. (47)

    return CMAState(
        mean=mean,
        sigma=paths.sigma,
        C=C,
        B=state.B,
        D=state.D,
        p_sigma=paths.p_sigma,
        p_c=p_c,
        eigen_generation=state.eigen_generation,
        params=p,
        **progress.next_progress(
            state, shaping.select_row(population, order[0]), f_sorted, p.popsize
        ),
    )


def summary(state: CMAState) -> termination.DistributionSummary:
    """What termination and the drivers read from a `CMAState`."""
    return termination.DistributionSummary(
        mean=state.mean,
        sigma=state.sigma,
        sigma0=state.sigma0,
        stds=jnp.sqrt(jnp.diag(state.C)),
        p_c=state.p_c,
        B=state.B,
        D=state.D,
    )


def _bind(fn: Callable[..., Any], setup: _Setup) -> Callable[..., Any]:
    """`fn` with `setup` bound, keeping its name and docstring."""
    return functools.update_wrapper(functools.partial(fn, setup), fn)


_STRUCTURAL_OPTIONS = frozenset({"preset", "active"})


def cma_es(
    num_dims: int,
    popsize: int | None = None,
    *,
    max_popsize: int | None = None,
    **static_options: Any,
) -> Strategy:
    """Build a CMA-ES strategy (minimisation).

    Args:
      num_dims: dimension n of the search space, >= 1.
      popsize: λ, >= 2; defaults to ``4 + floor(3 ln n)``.
      max_popsize: number of rows ``ask`` samples (default λ). With a larger value the
        active λ is ``params.popsize``, anything from 2 to `max_popsize`, set by
        ``default_params(popsize)``: the extra rows are sampled and ignored, which is how
        restarts grow λ inside ``jit`` (`evojax_cma.minimize_restarts`) and how a vmapped
        sweep covers several population sizes. Each generation then costs as much as one
        of `max_popsize` points.
      **static_options: ``preset`` (``"pycma"``, the default, or ``"tutorial"``; see the
        module docstring), ``active`` (bool, default True: negative weights in the
        covariance update), and default values of the termination criteria under pycma's
        names (``ftarget``, ``maxfevals``, ``tolfun``, ...; see
        `evojax_cma.core.termination`).

    Returns:
      A `Strategy` whose params are `CMAParams` and whose state is `CMAState`; its
      ``popsize`` is the number of rows, `max_popsize`. Its
      ``default_params(popsize=None, **overrides)`` re-derives what depends on an
      override (`default_constants`).

    Raises:
      TypeError: unknown option names or arguments of the wrong type.
      ValueError: ``num_dims < 1``, ``popsize < 2``, ``max_popsize < popsize``, a
        population of more than ``2**31 - 1`` numbers, or an unknown preset.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import evojax_cma as ec
      >>> es = ec.cma_es(4)
      >>> state = es.init(jax.random.key(0), jnp.ones(4), 0.5)
      >>> x, state = es.ask(jax.random.key(1), state)
      >>> state = es.tell(state, x, jnp.sum(x**2, axis=1))
      >>> int(state.generation), x.shape
      (1, (8, 4))
    """
    n, lam, cap = check_sizes(num_dims, popsize, max_popsize)
    validation.check_options(
        "cma_es option(s)", static_options, _STRUCTURAL_OPTIONS | set(termination.STOP_NAMES)
    )
    preset = static_options.get("preset", "pycma")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    active = static_options.get("active", True)
    if not isinstance(active, bool):
        raise TypeError(f"active must be a bool, got {active!r}")
    stop_defaults = {k: v for k, v in static_options.items() if k in termination.STOP_NAMES}
    setup = _Setup(n, lam, cap, preset, active)
    bound = (_default_params, _init, _ask, _tell, _check_params)
    functions = {f.__name__[1:]: _bind(f, setup) for f in bound}
    return build_strategy(
        "cma_es",
        n,
        cap,
        {"preset": preset, "active": active, "popsize": lam, "max_popsize": cap},
        stop_defaults,
        {**functions, "summary": summary},
        {COVARIANCE, WEIGHTED, MASKED_POPSIZE},
        popsize_of=lambda state: state.params.popsize,
        params_ok=_schema(cap).ok,
    )
