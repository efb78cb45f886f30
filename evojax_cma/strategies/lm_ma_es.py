r"""LM-MA-ES: limited-memory matrix adaptation for large n, O(m n) time per sample and memory.

Reference:
  I. Loshchilov, T. Glasmachers, H.-G. Beyer. Large Scale Black-box Optimization by
  Limited-Memory Matrix Adaptation. IEEE TEVC 23(2), 2019 (arXiv:1705.06693).
  ``Alg. 1, line k`` below refers to its Algorithm 1.

Instead of a covariance matrix the search keeps ``m`` direction vectors :math:`M_j` and
samples :math:`d = A_m \cdots A_1 z` with :math:`A_j = (1 - c_{d,j}) I + c_{d,j} M_j M_j^T`
(Alg. 1, lines 6-8); each :math:`M_j` is an evolution path of the selected :math:`z` with
its own rate :math:`c_{c,j}` (line 12), and σ follows a path :math:`p_\sigma` (lines 11, 13).

Defaults (Alg. 1, line 2): ``m = 4 + floor(3 ln n)``, :math:`c_{d,j} = 1/(1.5^{j-1} n)`,
:math:`c_{c,j} = \lambda/(4^{j-1} n)`, :math:`c_\sigma = 2\lambda/n`, weights
:math:`\ln\frac{\lambda+1}{2} - \ln i` for the better half. The paper targets ``n >> λ``;
for ``n < 2λ`` the rates :math:`c_\sigma` and :math:`c_{c,j}` would exceed 1 and are clipped
to 1 here (a documented deviation, outside the paper's regime).

`tell` takes the population as evaluated: it recovers ``z`` from ``d = (x - m)/σ`` by
inverting each :math:`A_j` with the Sherman-Morrison formula, so no noise is kept between
``ask`` and ``tell``. The termination criteria see the distribution as ``σ I`` (the
diagonal of the implied covariance is not formed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from evojax_cma.core import hyperparams, prng, progress, shaping, termination, validation
from evojax_cma.core.types import WEIGHTED, Strategy, build_strategy
from evojax_cma.strategies.cma_family import cma_raw_weights, default_popsize

LM_RANGES: tuple[validation.Range, ...] = (
    validation.field("weights"),  # finite
    validation.Range("weights (sum)", lambda p, xp: xp.sum(p.weights), 0.0),
    validation.field("c_sigma", 0.0, 1.0, upper_closed=True),
    validation.field("d_sigma", 0.0),
    validation.field("c_d", 0.0, 1.0, lower_closed=True),  # 1 - c_d is inverted in tell
    validation.field("c_c", 0.0, 1.0, lower_closed=True, upper_closed=True),
)
"""Ranges of `LMMAParams`: ``0 < c_sigma <= 1``, ``d_sigma > 0``, ``0 <= c_d < 1``,
``0 <= c_c <= 1``, finite weights with a positive sum."""


class LMMAParams(NamedTuple):
    """Numeric hyperparameters of LM-MA-ES (arrays; vmap over any of them).

    Attributes:
      weights: ``(popsize,)`` recombination weights, positive for the better half, sum 1.
      c_sigma: cumulation rate of the step-size path (Alg. 1, line 11).
      d_sigma: damping; σ changes by ``exp(c_sigma / d_sigma (|p|^2/n - 1))`` (paper: 2).
      c_d: ``(m,)`` rates of the transformations :math:`A_j` (line 8).
      c_c: ``(m,)`` rates of the direction vectors :math:`M_j` (line 12).
    """

    weights: Array
    c_sigma: Array
    d_sigma: Array
    c_d: Array
    c_c: Array


@progress.pytree_state
@dataclasses.dataclass(frozen=True, eq=False)
class LMMAState(progress.RunState):
    """State of one LM-MA-ES run; ``params`` are `LMMAParams`, the rest as in `RunState`.

    Attributes:
      p_sigma: evolution path of the step size.
      M: ``(m, n)`` direction vectors.
      params: the `LMMAParams` of this run.
    """

    p_sigma: Array
    M: Array


def lm_ma_es(
    num_dims: int, popsize: int | None = None, memory: int | None = None, **static_options: Any
) -> Strategy:
    """Build an LM-MA-ES strategy (minimisation) for large ``num_dims``.

    Args:
      num_dims: dimension n, >= 2.
      popsize: λ, >= 2; defaults to ``4 + floor(3 ln n)``.
      memory: number m of direction vectors, >= 1; defaults to ``4 + floor(3 ln n)``.
      **static_options: default termination thresholds under pycma's names.

    Returns:
      A `Strategy` with `LMMAParams` and `LMMAState`; memory O(m n), time O(λ m n).

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.lm_ma_es(200)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(200),
      ...                   1.0, options={"ftarget": 1e-8})
      >>> bool(res.state.best_f <= 1e-8)
      True
    """
    n = validation.check_int("num_dims", num_dims, 2)
    lam = default_popsize(n) if popsize is None else validation.check_int("popsize", popsize, 2)
    m = default_popsize(n) if memory is None else validation.check_int("memory", memory, 1)
    validation.check_rows("popsize", lam, n)
    validation.check_rows("memory", m, n)
    validation.check_options("lm_ma_es option(s)", static_options, set(termination.STOP_NAMES))
    stop_defaults = dict(static_options)
    j = np.arange(m)
    constants = dict(
        weights=np.maximum(cma_raw_weights(lam), 0.0),
        c_sigma=min(1.0, 2.0 * lam / n),
        d_sigma=2.0,
        c_d=1.0 / (1.5**j * n),
        c_c=np.minimum(1.0, lam / (4.0**j * n)),
    )

    shapes = {"weights": (lam,), "c_d": (m,), "c_c": (m,), "c_sigma": (), "d_sigma": ()}
    schema = hyperparams.Schema("lm_ma_es", LMMAParams, shapes, LM_RANGES)

    # Alg. 1's defaults; an override is used as given (no default depends on another).
    default_params = schema.default_params(lambda overrides: {**constants, **overrides})
    check_params = schema.check

    def init(key: Array, x0: Any, sigma0: Any, params: LMMAParams | None = None) -> LMMAState:
        """Start at `x0` with step size `sigma0` and no directions (`key` is unused)."""
        del key
        params = check_params(default_params() if params is None else params)
        fields = progress.initial_fields(x0, sigma0, params, n, lam)
        dtype = fields["mean"].dtype
        return LMMAState(p_sigma=jnp.zeros(n, dtype), M=jnp.zeros((m, n), dtype), **fields)

    def active_rates(state: LMMAState) -> Array:
        # Alg. 1, line 7: only the first min(t, m) transformations are applied.
        return jnp.where(jnp.arange(m) < state.generation, state.params.c_d, 0.0)

    # Every A_j maps span{v, M_1..M_m} into itself, so a chain of them applied to a batch v
    # is v' = a v + beta M with a scalar a and beta (λ, m). Only the projections M v and
    # the Gram matrix M M^T enter the recursion: two GEMMs of O(λ m n) instead of m
    # sequential passes over (λ, n), and the recursion itself costs O(λ m^2).
    def chain(state: LMMAState, v: Array, inverse: bool) -> Array:
        M = state.M
        Mv, gram = v @ M.T, M @ M.T
        c = active_rates(state)
        if inverse:  # Sherman-Morrison: A^{-1} u = (u - k M_j (M_j^T u)) / (1 - c)
            k = c / ((1 - c) + c * jnp.diag(gram))
        rows = jnp.arange(m)

        def step(carry, j):
            a, beta = carry
            proj = a * Mv[:, j] + beta @ gram[j]  # M_j^T u for the current u = a v + beta M
            onehot = (rows == j).astype(v.dtype)[None, :]
            if inverse:
                a, beta = a / (1 - c[j]), (beta - (k[j] * proj)[:, None] * onehot) / (1 - c[j])
            else:  # Alg. 1, line 8
                a, beta = (1 - c[j]) * a, (1 - c[j]) * beta + (c[j] * proj)[:, None] * onehot
            return (a, beta), None

        init = (jnp.asarray(1.0, v.dtype), jnp.zeros((v.shape[0], m), v.dtype))
        order = rows[::-1] if inverse else rows
        (a, beta), _ = lax.scan(step, init, order)
        return a * v + beta @ M

    def ask(key: Array, state: LMMAState, *, running: Any = True) -> tuple[Array, LMMAState]:
        """Sample ``m + σ d``, ``d = A_m ... A_1 z`` (Alg. 1, lines 5-9)."""
        del running
        validation.check_key(key)
        validation.check_state("lm_ma_es.ask", state, LMMAState, LMMAParams)
        z = prng.normal(key, (lam, n), state.mean.dtype)
        return state.mean[None, :] + state.sigma * chain(state, z, inverse=False), state

    def tell(state: LMMAState, population: Any, fitness: Any) -> LMMAState:
        """Update mean, paths, directions and σ (Alg. 1, lines 10-14)."""
        validation.check_state("lm_ma_es.tell", state, LMMAState, LMMAParams)
        validation.check_population("population", population, (lam, n))
        p = state.params
        population, _, order, f_sorted = shaping.rank_population(population, fitness, state.mean)
        d = (population[order] - state.mean[None, :]) / state.sigma
        z = chain(state, d, inverse=True)
        w = p.weights
        mueff = jnp.sum(w) ** 2 / jnp.sum(w**2)
        z_w, d_w = w @ z, w @ d
        cs, cc = p.c_sigma, p.c_c
        p_sigma = (1 - cs) * state.p_sigma + jnp.sqrt(mueff * cs * (2 - cs)) * z_w  # line 11
        M = (1 - cc)[:, None] * state.M + jnp.sqrt(mueff * cc * (2 - cc))[:, None] * z_w[None, :]
        sigma = state.sigma * jnp.exp(cs / p.d_sigma * (jnp.sum(p_sigma**2) / n - 1))  # line 13
        mean = state.mean + state.sigma * d_w  # line 10
        # Keep steps resolvable at the new mean (below eps |m| they round to d = 0).
        info = jnp.finfo(mean.dtype)
        sigma = jnp.maximum(sigma, info.eps * jnp.max(jnp.abs(mean)) + info.tiny)
        return LMMAState(
            mean=mean,
            sigma=sigma,
            p_sigma=p_sigma,
            M=M,
            params=p,
            **progress.next_progress(state, population[order[0]], f_sorted),
        )

    def summary(state: LMMAState) -> termination.DistributionSummary:
        """The distribution as ``σ I`` (module docstring), for termination and drivers."""
        ones = jnp.ones(n, state.mean.dtype)
        return termination.diagonal_summary(state.mean, state.sigma, state.sigma0, ones)

    functions: dict[str, Callable[..., Any]] = dict(
        default_params=default_params, init=init, ask=ask, tell=tell, summary=summary
    )
    functions["check_params"] = check_params
    return build_strategy(
        "lm_ma_es",
        n,
        lam,
        {"memory": m},
        stop_defaults,
        functions,
        {WEIGHTED},
        params_ok=schema.ok,
    )
