r"""Inequality constraints through pycma's adaptive augmented Lagrangian, pure and jittable.

References:
  A. Atamna, A. Auger, N. Hansen. Linearly convergent evolution strategies via augmented
  Lagrangian constraint handling. FOGA 2017, Algorithm 1 and Section 8.2.
  N. Hansen et al. pycma 4.5, ``cma.constraints_handler.AugmentedLagrangian`` (default
  ``algorithm=0``) and ``ConstrainedFitnessAL`` (``which='best'``), followed here step by
  step; ``tests/test_constraints.py`` feeds both the same populations and compares the
  coefficients to rounding.

Constraints are ``g(x) <= 0`` (``m`` of them). Every candidate is told

.. math::
   h(x) = f(x) + \sum_i \lambda_i \tilde g_i + \tfrac{\mu_i}{2} \tilde g_i^2, \qquad
   \tilde g_i = \max(g_i(x), -\lambda_i / \mu_i)                           \tag{AL}

with coefficients adapted after every generation:

* ``set_coefficients`` (until every constraint is *initialized*): from the generation's
  ``F`` and ``G``, ``lambda_i = iqr(F) / (n iqr(G_i))`` and
  ``mu_i = 2 iqr(F) / (5 n (iqr(G_i) + 1e-6 iqr(G_i^2)))`` (pycma's heuristic), for
  constraints violated by more than 10% of the population;
* ``update`` with ``f, g`` of the generation's best candidate by ``h``:
  ``lambda_i += mu_i g_i / d_gamma`` (clamped at 0, :math:`d_\gamma = 5`), and
  ``mu_i`` multiplied by :math:`\chi^{\pm(1 \pm s_i)/4}`, :math:`\chi = 2^{1/(5n)}`,
  increased while ``g_i > 0`` or more than 95% of the last ``5 + n`` best candidates were
  feasible yet penalised, decreased while fewer than 90% were feasible; ``s_i`` ramps up
  after ``2 + m`` successive changes of one sign (pycma's ``CountLastSameChanges``).

Non-finite values (the documented rule): a candidate whose ``f`` or any ``g_i`` is NaN is
told NaN (it ranks last, see the strategy's rule) and takes no part in the adaptation;
a generation with such a candidate does not set initial coefficients (as pycma).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import Array

from evojax_cma.transforms.base import Evaluated, Pipeline, Transform

D_GAMMA = 5.0  # damping of the lambda update
P_FEAS_UP = 0.95  # muplus3 threshold
P_FEAS_DOWN = 0.9  # muminus3 threshold


class ALState(NamedTuple):
    """Augmented-Lagrangian coefficients and the history that adapts them (one run)."""

    multipliers: Array  # (m,) Lagrange multipliers (pycma's ``lam``), >= 0
    mu: Array  # (m,) penalty factors, >= 0
    initialized: Array  # (m,) bool: coefficients set from data for good
    started: Array  # bool: set_coefficients ran once (pycma: ``lam is not None``)
    count: Array  # updates since `started`
    penalized: Array  # (m,) candidates with mu g > -lam since the last update
    counting: Array  # bool: `penalized` counts (pycma: the count is an array)
    hist: Array  # (5 + n + ..., m) g of the best candidates, ring buffer
    hist_count: Array  # entries ever written to hist
    same_changes: Array  # (m,) signed run length of mu changes


def init_al(num_constraints: int, num_dims: int, dtype: Any) -> ALState:
    """Coefficients 0 (no penalty) until the first generation sets them."""
    m = num_constraints
    return ALState(
        multipliers=jnp.zeros(m, dtype),
        mu=jnp.zeros(m, dtype),
        initialized=jnp.zeros(m, bool),
        started=jnp.asarray(False),
        count=jnp.asarray(0, jnp.int32),
        penalized=jnp.zeros(m, jnp.int32),
        counting=jnp.asarray(False),
        hist=jnp.zeros((num_dims + 20, m), dtype),  # pycma's g_history maxlen
        hist_count=jnp.asarray(0, jnp.int32),
        same_changes=jnp.zeros(m, jnp.int32),
    )


def _coefficients(al: ALState, G: Array) -> tuple[Array, Array]:
    return jnp.broadcast_to(al.multipliers, G.shape), jnp.broadcast_to(al.mu, G.shape)


def al_penalties(al: ALState, G: Array) -> Array:
    """The penalties ``lam g + mu g^2 / 2`` of (AL), one per constraint value in `G`.

    ``g`` is raised to ``-lam/mu`` where below (the inactive side of (AL) is flat).
    """
    lam, mu = _coefficients(al, G)
    g = jnp.where(mu * G < -lam, -lam / jnp.where(mu > 0, mu, 1.0), G)
    return lam * g + 0.5 * mu * g**2


def al_fitness(al: ALState, F: Array, G: Array, popsize: Any) -> tuple[Array, ALState]:
    """The augmented fitness (AL) of a generation, and `al` with its penalty counts.

    Args:
      al: the current `ALState`.
      F: ``(rows,)`` objective values.
      G: ``(rows, m)`` constraint values (``<= 0`` is feasible).
      popsize: number of real rows (the rest is padding and ignored).
    """
    real = (jnp.arange(F.shape[0]) < popsize)[:, None]
    finite = jnp.isfinite(F) & jnp.all(jnp.isfinite(G), axis=-1)
    h = F + jnp.sum(al_penalties(al, G), axis=-1)
    h = jnp.where(finite, h, jnp.nan)
    lam, mu = _coefficients(al, G)
    hits = jnp.sum(real & (mu * G > -lam), axis=0).astype(jnp.int32)
    penalized = jnp.where(al.started, al.penalized + hits, al.penalized)
    return h, al._replace(penalized=penalized, counting=al.counting | al.started)


def _percentile(x: Array, count: Any, p: float) -> Array:
    """``np.percentile(x[:count], p)`` (linear) of `x` sorted with padding last."""
    pos = p / 100.0 * (count - 1)
    i = jnp.floor(pos).astype(jnp.int32)
    j = jnp.minimum(i + 1, count - 1)
    frac = pos - i
    return x[i] + frac * (x[j] - x[i])


def _iqr(values: Array, valid: Array, count: Any) -> Array:
    """Interquartile range along axis 0 of the `valid` rows (``count`` of them)."""
    mask = valid.reshape(valid.shape + (1,) * (values.ndim - 1))
    s = jnp.sort(jnp.where(mask, values, jnp.inf), axis=0)
    return _percentile(s, count, 75.0) - _percentile(s, count, 25.0)


def set_coefficients(al: ALState, F: Array, G: Array, valid: Array, num_dims: int) -> ALState:
    """As pycma's ``AugmentedLagrangian.set_coefficients(F, G)``, over the `valid` rows."""
    n = num_dims
    count = jnp.sum(valid)
    sign_average = -1.0 + 2.0 * jnp.sum(valid[:, None] & (G > 0), axis=0) / count
    todo = (~al.initialized | (al.mu == 0)) & (sign_average > -0.8)
    df = _iqr(F, valid, count)
    dG = _iqr(G, valid, count)
    dG2 = _iqr(G**2, valid, count)
    mu_new = 2.0 / 5.0 * df / n / (dG + 1e-6 * dG2 + 1e-11 * (df + 1))
    lam = jnp.where(todo, df / (n * dG + 1e-11 * (df + 1)), al.multipliers)
    decrease = (sign_average <= 0.2) & ((al.mu == 0) | (al.mu > mu_new)) & todo
    rescale = decrease & (al.mu > 0)
    lam = jnp.where(rescale, lam * mu_new / jnp.where(rescale, al.mu, 1.0), lam)
    mu = jnp.where(todo, mu_new, al.mu)
    gmax = jnp.max(jnp.where(valid[:, None], jnp.abs(G), 0.0), axis=0)
    mu = jnp.where(todo, jnp.minimum(20 * mu, jnp.maximum(mu, lam / (1e-22 + gmax))), mu)
    settle = todo & ((al.count > 2 + n) | (jnp.abs(sign_average) < 0.8))
    new = al._replace(multipliers=lam, mu=mu, initialized=al.initialized | settle, started=True)
    done = al.started & jnp.all(al.initialized & (al.mu > 0))
    return _select(done, al, new)


def _select(keep_old: Array, old: ALState, new: ALState) -> ALState:
    return ALState(*(jnp.where(keep_old, a, b) for a, b in zip(old, new, strict=True)))


def _cdf_feasible(al: ALState, horizon: int) -> Array:
    """Fraction of the last `horizon` history entries with ``g < 0`` (``g == 0`` halves)."""
    cap = al.hist.shape[0]
    age = (al.hist_count - 1 - jnp.arange(cap)) % cap
    use = (age < jnp.minimum(jnp.minimum(al.hist_count, cap), horizon))[:, None]
    score = (al.hist < 0) + 0.5 * (al.hist == 0)
    return jnp.sum(jnp.where(use, score, 0.0), axis=0) / jnp.sum(use)


def _shape_exponent(same: Array, num_constraints: int) -> Array:
    """As pycma's ``CountLastSameChanges.shape_exponent`` (threshold ``2 + m``)."""
    threshold = 2.0 + num_constraints
    s = jnp.sign(same)
    d = same - s * threshold
    d = d * (d * s > 0)
    return 4.0 / threshold * s * jnp.minimum(threshold, s * d)


def al_update(al: ALState, g: Array, num_dims: int) -> ALState:
    """As pycma's ``AugmentedLagrangian.update(f, g)``, ``algorithm=0`` (which ignores f).

    `g` is the ``(m,)`` constraint vector of the generation's best candidate.
    """
    n, m = num_dims, g.shape[0]
    cap = al.hist.shape[0]
    # pycma records g even before the coefficients exist
    hist = al.hist.at[al.hist_count % cap].set(g)
    al = al._replace(hist=hist, hist_count=al.hist_count + 1)
    if_not_started = al
    lam, mu = al.multipliers, al.mu
    live = mu != 0
    bump = (g * mu > -lam) | ~al.counting | (al.penalized > 0)
    lam = jnp.where(live & bump, lam + mu * g / D_GAMMA, lam)
    clamped = live & (lam < 0)
    lam = jnp.where(clamped, 0.0, lam)
    adapt = live & ~clamped & ~(g * mu < -lam)
    p_feas = _cdf_feasible(al, int(5 + n))
    plus = (g > 0) | ((g * mu > -lam) & (p_feas > P_FEAS_UP))
    minus = ~plus & (p_feas < P_FEAS_DOWN) & (g < 0)
    step = jnp.where(adapt & plus, 1, jnp.where(adapt & minus, -1, 0)).astype(jnp.int32)
    same = al.same_changes
    same = jnp.where(step * same < 0, 0, same) + step
    expo = _shape_exponent(same, m)
    chi = 2.0 ** (1.0 / 5.0 / n)
    mu = jnp.where(step > 0, mu * chi ** (0.25 * (1 + expo)), mu)
    mu = jnp.where(step < 0, mu * chi ** (-0.25 * (1 - expo)), mu)
    new = al._replace(
        multipliers=lam,
        mu=mu,
        count=al.count + 1,
        penalized=jnp.zeros_like(al.penalized),
        same_changes=same,
    )
    return _select(~al.started, if_not_started, new)


def al_generation(
    al: ALState, F: Array, G: Array, h: Array, popsize: Any, num_dims: int
) -> ALState:
    """After a generation was told: ``ConstrainedFitnessAL.update`` (``which='best'``).

    Sets the coefficients from the generation while not all are initialized (and all its
    ``F`` are finite), then updates them with ``f, g`` of its best candidate by the
    augmented fitness `h` (as computed by `al_fitness`, before this call).
    """
    real = jnp.arange(F.shape[0]) < popsize
    finite = jnp.isfinite(F) & jnp.all(jnp.isfinite(G), axis=-1)
    can_set = ~jnp.all(al.initialized & al.started) & jnp.all(finite | ~real)
    al = _select(~can_set, al, set_coefficients(al, F, G, real, num_dims))
    ok = real & ~jnp.isnan(h)
    i = jnp.argmin(jnp.where(ok, h, jnp.inf))
    return _select(~jnp.any(ok), al, al_update(al, G[i], num_dims))


@dataclasses.dataclass(frozen=True)
class AugmentedLagrangian(Transform):
    """Pycma's adaptive augmented Lagrangian for ``num_constraints`` values ``g(x) <= 0``.

    The constraint function itself belongs to the problem (it is evaluated beside the
    objective); this transformation holds the coefficients (module docstring). Build it
    with `augmented_lagrangian`.
    """

    num_constraints: int
    stateful = True

    def init(self, num_dims: int, rows: int, dtype: Any) -> ALState:
        """Coefficients 0 until the first generation sets them."""
        del rows
        return init_al(self.num_constraints, num_dims, dtype)

    def shape_fitness(
        self, state: ALState, h: Array, ev: Evaluated, prefix: Pipeline
    ) -> tuple[Array, ALState]:
        """The augmented fitness (AL) of the generation and the penalty counts."""
        del prefix
        assert ev.g is not None
        return al_fitness(state, h, ev.g, ev.popsize)

    def penalize(self, state: ALState, f: Array, g: Array | None) -> Array:
        """(AL) with the current coefficients, for extra evaluations."""
        assert g is not None
        return f + jnp.sum(al_penalties(state, g), axis=-1)

    def after_tell(self, state: ALState, h: Array, ev: Evaluated) -> ALState:
        """``ConstrainedFitnessAL.update`` from the generation (`al_generation`)."""
        assert ev.g is not None
        return al_generation(state, ev.f, ev.g, h, ev.popsize, ev.genotypes.shape[-1])

    def stop_defaults(self) -> dict[str, Any]:
        """``tolstagnation`` off, as in ``cma.fmin_con2`` (the augmented fitness moves)."""
        return {"tolstagnation": 0}


def augmented_lagrangian(num_constraints: int) -> AugmentedLagrangian:
    """The augmented-Lagrangian transformation for ``m`` constraints (``m >= 1``)."""
    if isinstance(num_constraints, bool) or not isinstance(num_constraints, int):
        raise TypeError(f"num_constraints must be an int, got {num_constraints!r}")
    if num_constraints < 1:
        raise ValueError(f"num_constraints must be >= 1, got {num_constraints}")
    return AugmentedLagrangian(num_constraints)


__all__ = [
    "ALState",
    "AugmentedLagrangian",
    "augmented_lagrangian",
    "al_fitness",
    "al_generation",
    "al_penalties",
    "al_update",
    "init_al",
    "set_coefficients",
]
