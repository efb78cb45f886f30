r"""Pycma's adaptive quadratic ``BoundPenalty`` as a pure, jittable fitness transformation.

Reference:
  N. Hansen, A. S. P. Niederberger, L. Guzzella, P. Koumoutsakos. A method for handling
  uncertainty in evolutionary optimization with an application to feedback control of
  combustion. IEEE TEC 13(1), 2009, Section IV-B and addendum; pycma 4.5
  ``cma.BoundPenalty`` (the update below follows its ``update`` method line by line).

The objective is evaluated at the projection ``clip(x)`` of each sampled point ``x`` onto
the box (evaluated points always lie in the box); the strategy is told
``f(clip(x)) + sum_i gamma_i (clip(x)_i - x_i)^2 / n``. The weights ``gamma`` start at 1
and, once the mean leaves the box, at ``2 dfit`` with ``dfit`` the median of recent
interquartile fitness ranges (normalised by the mean variance); they grow for coordinates
whose mean lies more than ``3 max(1, sqrt(n)/mu_eff)`` standard deviations outside and
shrink back when they exceed ``5 dfit``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import Array

from evojax_cma.core import types
from evojax_cma.core.shaping import mueff_of
from evojax_cma.transforms.base import Evaluated, Pipeline
from evojax_cma.transforms.encodings import ClipToBox, check_bounds


class PenaltyState(NamedTuple):
    """State of the bound penalty of one run."""

    gamma: Array  # (n,) coordinate weights
    initialized: Array  # whether gamma was set from the fitness scale
    hist: Array  # (H,) recent normalised interquartile ranges, newest at index count-1 mod H
    count: Array  # entries ever written to hist


def init_penalty(num_dims: int, popsize: int, dtype: Any) -> PenaltyState:
    """Weights 1, empty history (capacity ``floor(20 + 3 n / popsize)``)."""
    capacity = int(20 + 3 * num_dims / popsize)
    return PenaltyState(
        gamma=jnp.ones(num_dims, dtype),
        initialized=jnp.asarray(False),
        hist=jnp.full((capacity,), jnp.nan, dtype),
        count=jnp.asarray(0, jnp.int32),
    )


def bound_penalty_fitness(
    penalty: PenaltyState,
    unrepaired: Array,
    repaired: Array,
    fitness: Array,
    *,
    mean_offset: Array,
    variances: Array,
    weights: Array,
    generation: Array,
    popsize: Any,
) -> tuple[Array, PenaltyState]:
    """Update the weights from this generation, then return the penalised fitness.

    Args:
      penalty: the current `PenaltyState`.
      unrepaired: ``(rows, n)`` phenotypes of the sampled points (possibly outside).
      repaired: ``(rows, n)`` their projections onto the box, where ``fitness`` was taken.
      fitness: ``(rows,)``; rows from `popsize` on are padding (ignored).
      mean_offset: ``mean - geno(clip(pheno(mean)))``, the mean's violation in genotype.
      variances: ``sigma^2 diag(C)`` of the distribution the points came from.
      weights: the strategy's recombination weights (for mu_eff).
      generation: generations completed before this one.
      popsize: number of real rows λ (may be traced).
    """
    n = unrepaired.shape[-1]
    rows = fitness.shape[0]
    real = jnp.arange(rows) < popsize

    dmean = mean_offset / jnp.sqrt(variances)
    f_sorted = jnp.sort(jnp.where(real & ~jnp.isnan(fitness), fitness, jnp.inf))
    l1 = 1 + popsize
    iqr = f_sorted[(3 * l1) // 4] - f_sorted[l1 // 4]
    val = iqr / jnp.mean(variances)
    cap = penalty.hist.shape[0]
    n_valid = jnp.minimum(penalty.count, cap)
    valid = jnp.arange(cap) < n_valid
    hist_max = jnp.max(jnp.where(valid, penalty.hist, -jnp.inf))
    good = jnp.isfinite(val) & (val > 0)
    push = good | ((val == jnp.inf) & (n_valid > 1))
    new_val = jnp.where(good, val, hist_max)
    hist = jnp.where(push, penalty.hist.at[penalty.count % cap].set(new_val), penalty.hist)
    count = penalty.count + push.astype(jnp.int32)
    # keep the newest floor(20 + 3n/λ) entries (pycma pops the oldest beyond that)
    keep = jnp.floor(20.0 + 3.0 * n / popsize).astype(jnp.int32)
    age = (count - 1 - jnp.arange(cap)) % cap
    in_window = (age < jnp.minimum(count, keep)) & (jnp.arange(cap) < count)
    have_hist = jnp.any(in_window)
    dfit = jnp.nanmedian(jnp.where(in_window, hist, jnp.nan))

    mueff = mueff_of(weights, jnp)
    damp = jnp.minimum(1.0, mueff / 10.0 / n)
    start = jnp.any(dmean != 0) & (~penalty.initialized | (generation + 1 == 2)) & have_hist
    gamma = jnp.where(start, jnp.full_like(penalty.gamma, 2.0 * dfit), penalty.gamma)
    initialized = penalty.initialized | start
    edist = jnp.abs(dmean) - 3.0 * jnp.maximum(1.0, jnp.sqrt(n) / mueff)
    grown = gamma * jnp.exp((edist > 0) * jnp.tanh(edist / 3.0) / 2.0) ** damp
    grown = jnp.where(grown > 5.0 * dfit, grown * jnp.exp(-1.0 / 3.0) ** damp, grown)
    gamma = jnp.where(initialized & have_hist, grown, gamma)

    pen = jnp.sum(gamma[None, :] * (repaired - unrepaired) ** 2, axis=-1) / n
    state = PenaltyState(gamma=gamma, initialized=initialized, hist=hist, count=count)
    return fitness + pen, state


@dataclasses.dataclass(frozen=True)
class BoundPenalty(ClipToBox):
    """Evaluate at the projection onto the box, tell the adaptively penalised fitness.

    See the module docstring; build with `bound_penalty`. Reads the strategy's
    recombination weights, so it needs a CMA-family strategy.
    """

    requires = frozenset({types.WEIGHTED})
    stateful = True

    def init(self, num_dims: int, rows: int, dtype: Any) -> PenaltyState:
        """Weights 1 and an empty history."""
        return init_penalty(num_dims, rows, dtype)

    def shape_fitness(
        self, state: PenaltyState, h: Array, ev: Evaluated, prefix: Pipeline
    ) -> tuple[Array, PenaltyState]:
        """Add the penalty ``sum_i gamma_i (clip(x)_i - x_i)^2 / n`` after adapting gamma."""
        dist = ev.dist
        assert dist.weights is not None
        mean_pre = prefix.decode(dist.mean)
        mean_in = self.decode(mean_pre)
        mean_geno = prefix.encode(self.encode(mean_in))
        mean_offset = jnp.where(mean_pre == mean_in, 0.0, dist.mean - mean_geno)
        return bound_penalty_fitness(
            state,
            ev.inputs,
            ev.outputs,
            h,
            mean_offset=mean_offset,
            variances=dist.variances,
            weights=dist.weights,
            generation=dist.generation,
            popsize=ev.popsize,
        )


def bound_penalty(lower: Any, upper: Any) -> BoundPenalty:
    """Pycma's adaptive ``BoundPenalty`` for the box ``[lower, upper]`` (±inf allowed).

    Every evaluated point lies in the box (the objective sees the projection); the
    strategy is told the fitness plus a quadratic penalty on the distance to the box,
    with weights adapted from the fitness' interquartile range (module docstring).
    """
    lo, hi = check_bounds(lower, upper)
    return BoundPenalty(lo, hi)


__all__ = [
    "BoundPenalty",
    "PenaltyState",
    "bound_penalty",
    "bound_penalty_fitness",
    "init_penalty",
]
