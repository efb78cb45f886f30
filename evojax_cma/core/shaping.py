r"""Fitness shaping: ranking with a rule for non-finite values, utilities, CMA weights.

Non-finite fitness rule
-----------------------
Fitness is told in the state's dtype; a finite value beyond its range is clipped to
``±finfo.max`` (`fitness_in`), complex fitness is a `TypeError`.
A fitness value that is not finite (NaN, :math:`+\infty` or :math:`-\infty`) is ranked
worse than every finite value, whatever its sign; among themselves, non-finite values keep
the order of their indices. Ranking is stable: tied values keep the order of their indices,
so every rank position receives exactly one weight and ties never change the sum of the
weights. A strategy only sees ranks, so a non-finite fitness can never reach the mean, step
size or covariance matrix as a number. (pycma instead replaces NaN by the median of the
finite values and uses infinities as they are.)

Utilities for gradient estimators
---------------------------------
`centered_ranks`, `z_score` and `cma_utilities` map a fitness vector to one utility per
candidate (lower is better, as the fitness), for the score-function strategies
(`evojax_cma.open_es`, `evojax_cma.variational`). They are *tie-safe* in the sense those
estimators need: tied fitness values receive equal utilities (midranks), so the order of
the candidates in the population never leaks into the gradient (with antithetic pairs
on neighbouring rows, ``+eps_i`` then ``-eps_i``, index-ordered ranks on a plateau would
push the mean along ``sum(eps)``). Non-finite values are all tied with each other, worst.
`SHAPINGS` names them.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core.validation import check_population, check_real_dtype, is_concrete


def fitness_in(fitness: Any, dtype: Any) -> Array:
    """Told fitness as an array of the state's `dtype`, clipping finite values to its range.

    A finite value beyond the dtype's range (``±1e308`` told to a float32 state) becomes
    ``±finfo.max`` rather than ``±inf``: it keeps its sign and ranks as the extreme finite
    value it is, instead of falling under the non-finite rule.

    Raises:
      TypeError: complex (or non-numeric) fitness, whose imaginary part would be dropped.
    """
    check_real_dtype("fitness", fitness)
    big = float(np.finfo(np.dtype(dtype)).max)
    if is_concrete(fitness) and not isinstance(fitness, Array):
        f = np.asarray(fitness)
        if np.issubdtype(f.dtype, np.floating):
            with np.errstate(invalid="ignore"):
                f = np.where(np.isfinite(f), np.clip(f, -big, big), f)
        return jnp.asarray(f, dtype)
    f = jnp.asarray(fitness)
    if jnp.issubdtype(f.dtype, jnp.floating) and jnp.finfo(f.dtype).max > big:
        f = jnp.where(jnp.isfinite(f), jnp.clip(f, -big, big), f)
    return f.astype(dtype)


def effective_fitness(fitness: Array) -> Array:
    """Map non-finite fitness values to ``+inf`` so that they sort last."""
    return jnp.where(jnp.isfinite(fitness), fitness, jnp.inf)


def rank_order(fitness: Array) -> tuple[Array, Array]:
    """Return the indices that sort `fitness` best first, and the sorted effective values.

    Args:
      fitness: ``(popsize,)`` values to minimise.

    Returns:
      ``(order, sorted_fitness)``: ``fitness[order]`` is non-decreasing with every
      non-finite value last (see the module docstring); ``sorted_fitness`` holds those
      values with non-finite ones replaced by ``+inf``.
    """
    eff = effective_fitness(fitness)
    order = jnp.argsort(eff, stable=True)
    return order, eff[order]


def rank_population(
    population: Any, fitness: Any, mean: Array, popsize: Any = None
) -> tuple[Array, Array, Array, Array]:
    """Check a told population and its fitness, make them safe to learn from, rank them.

    The one home of the non-finite rule for ``tell``: a row with a non-finite coordinate
    (a failed simulation, an overflow) gets NaN fitness and is replaced by the `mean`, so
    that it ranks last and every update term it enters is zero (a zero weight times NaN
    would still be NaN). Non-finite fitness ranks last (`rank_order`).

    Args:
      population: ``(rows, n)`` points as evaluated.
      fitness: ``(rows,)`` their values (minimised).
      mean: ``(n,)`` the state's mean; its dtype is the state's.
      popsize: the rows in use, where only the first ones form the generation (may be
        traced); the others rank after all, as non-finite values do.

    Returns:
      ``(population, fitness, order, sorted_fitness)``: the safe population and fitness
      in the state's dtype, and `rank_order` of the fitness.
    """
    rows = np.shape(population)[0] if np.ndim(population) == 2 else -1
    check_population("population", population, (rows, mean.shape[-1]))
    check_population("fitness", fitness, (rows,))
    check_real_dtype("population", population)
    population = jnp.asarray(population, mean.dtype)
    fitness = fitness_in(fitness, mean.dtype)
    finite_row = jnp.all(jnp.isfinite(population), axis=1)
    fitness = jnp.where(finite_row, fitness, jnp.nan)
    if popsize is not None:
        fitness = jnp.where(jnp.arange(rows) < popsize, fitness, jnp.nan)
    population = jnp.where(finite_row[:, None], population, mean[None, :])
    order, f_sorted = rank_order(fitness)
    return population, fitness, order, f_sorted


def select_row(x: Array, i: Any) -> Array:
    """Row `i` of `x` as a masked sum over rows, exactly ``x[i]`` for finite rows.

    A population split by rows over devices (`evojax_cma.sharding`) then sends one
    n-vector across devices, where ``x[i]`` (a dynamic index) gathers the whole array.
    """
    pick = (jnp.arange(x.shape[0]) == i).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.sum(jnp.where(pick, x, jnp.zeros((), x.dtype)), axis=0)


def ranks(fitness: Array) -> Array:
    """Rank of each entry, 0 for the best, with the non-finite rule and stable ties."""
    order, _ = rank_order(fitness)
    return (
        jnp.zeros(order.shape, order.dtype)
        .at[order]
        .set(jnp.arange(order.shape[0], dtype=order.dtype))
    )


PAIRWISE_MAX = 256
"""Up to this many values, `tie_bounds` counts pairwise (λ² comparisons in one fused
kernel) rather than sorting and searching: XLA:CPU sorts 64 values in ~4 µs, and each
binary search is a small loop. Centred ranks of 64 values took 5.1 µs sorted against
0.9 µs counted (100 vmapped runs; 5.7 against 2.1 for one), the same at 256."""


def tie_bounds(fitness: Array) -> tuple[Array, Array]:
    """For each entry, how many effective values are below it, and how many at most it.

    These are the left and right ``searchsorted`` positions of each entry among the sorted
    effective values (`effective_fitness`): entry i's tie group occupies the sorted
    positions ``lo[i] .. hi[i] - 1``. Counted pairwise up to `PAIRWISE_MAX` values (the
    same integers, without a sort), sorted and searched beyond.
    """
    eff = effective_fitness(fitness)
    if eff.shape[0] <= PAIRWISE_MAX:
        lo = jnp.sum(eff[None, :] < eff[:, None], axis=1, dtype=jnp.int32)
        hi = jnp.sum(eff[None, :] <= eff[:, None], axis=1, dtype=jnp.int32)
        return lo, hi
    s = jnp.sort(eff)
    return jnp.searchsorted(s, eff, side="left"), jnp.searchsorted(s, eff, side="right")


def midranks(fitness: Array) -> Array:
    """Rank of each entry (0 for the best) with tied values sharing their mean rank.

    Non-finite values are tied with each other, after every finite value. The midranks
    sum to ``λ(λ-1)/2`` whatever the ties.
    """
    lo, hi = tie_bounds(fitness)
    return (lo + hi - 1).astype(jnp.result_type(float)) / 2


def centered_ranks(fitness: Array) -> Array:
    """Midranks mapped linearly onto ``[-0.5, 0.5]``, best (lowest fitness) at ``-0.5``.

    This is the shaping of Salimans et al. (2017), written for minimisation; tied values
    share a utility (see the module docstring), and the utilities always sum to 0.
    """
    n = fitness.shape[0]
    return midranks(fitness) / (n - 1) - 0.5


def z_score(fitness: Array) -> Array:
    """``(f - mean f) / std f`` over the finite values; non-finite ones get the worst.

    Not invariant to monotone transforms of f (it uses the values), but it keeps their
    scale, which some users of score-function estimators want. A flat population
    (zero spread) gives all-zero utilities.
    """
    finite = jnp.isfinite(fitness)
    count = jnp.maximum(jnp.sum(finite), 1)
    f = jnp.where(finite, fitness, 0.0)
    mean = jnp.sum(f) / count
    std = jnp.sqrt(jnp.sum(jnp.where(finite, (f - mean) ** 2, 0.0)) / count)
    z = jnp.where(std > 0, (f - mean) / jnp.where(std > 0, std, 1.0), 0.0)
    worst = jnp.max(jnp.where(finite, z, -jnp.inf))
    return jnp.where(finite, z, jnp.maximum(worst, 0.0))


def cma_utilities(fitness: Array) -> Array:
    """Minus the positive CMA weights of Eq. (49) by midrank (0 for the worse half).

    Candidate of rank ``i`` (0-based) gets ``-w_{i+1}``: the best candidates have the most
    negative utility, so that a descent step moves towards them. Tied candidates share the
    mean of their weights, and the utilities sum to -1.
    """
    n = fitness.shape[0]
    w = jnp.asarray(np.maximum(cma_raw_weights(n), 0.0), jnp.result_type(float))
    lo, hi = tie_bounds(fitness)
    cum = jnp.concatenate([jnp.zeros(1, w.dtype), jnp.cumsum(w)])
    return -(cum[hi] - cum[lo]) / (hi - lo).astype(w.dtype)


def raw(fitness: Array) -> Array:
    """The fitness itself (no shaping); for tests of unbiasedness and for users who shape."""
    return fitness


SHAPINGS = {
    "centered_ranks": centered_ranks,
    "z_score": z_score,
    "cma_weights": cma_utilities,
    "raw": raw,
}
"""Fitness-to-utility functions by name, for the ``shaping=`` option of the ES strategies."""


def cma_raw_weights(popsize: Any, capacity: int | None = None, xp: Any = np) -> Any:
    r"""Hansen's raw weights :math:`w'_i = \ln\frac{\lambda+1}{2} - \ln i` (tutorial Eq. 49).

    Positive weights are normalised to sum to one and negative weights to sum to minus one,
    as pycma's ``RecombinationWeights`` does before finalisation.

    Args:
      popsize: λ; may be a traced integer when ``xp`` is ``jax.numpy``.
      capacity: length of the returned vector (default λ); entries from λ on are 0, so a
        population padded to `capacity` rows with its padding ranked last is weighted as
        one of λ rows.
      xp: ``numpy`` (float64, the default) or ``jax.numpy``.
    """
    cap = popsize if capacity is None else capacity
    i = xp.arange(1, cap + 1) * (np.float64(1.0) if xp is np else 1.0)
    w = xp.where(i <= popsize, xp.log((popsize + 1) / 2.0) - xp.log(i), 0.0)
    pos, neg = w > 0, w < 0
    w = xp.where(pos, w / xp.sum(xp.where(pos, w, 0.0)), w)
    neg_sum = xp.sum(xp.where(neg, w, 0.0))
    return xp.where(neg, w / -xp.where(neg_sum < 0, neg_sum, -1.0), w)


def mueff_of(weights: Any, xp: Any = np) -> Any:
    r"""Variance-effective selection mass :math:`(\sum w_i^+)^2 / \sum (w_i^+)^2` (Eq. 8)."""
    wp = xp.maximum(weights, 0.0)
    return xp.sum(wp) ** 2 / xp.sum(wp**2)


# The CMA family's other shared pieces (negative weights of Eqs. 50-53, E||N||, default
# popsize, evolution paths) are in `evojax_cma.strategies.cma_family`; the two functions
# above stay in the core because `cma_utilities` and `evojax_cma.transforms.bound_penalty`
# need them.
