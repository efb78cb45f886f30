r"""Uncertainty handling (UH-CMA-ES) as pure, jittable steps, as pycma's ``NoiseHandler``.

References:
  N. Hansen, A. S. P. Niederberger, L. Guzzella, P. Koumoutsakos. A method for handling
  uncertainty in evolutionary optimization with an application to feedback control of
  combustion. IEEE TEC 13(1), 2009, Section III (rank-change measurement, Eqs. (2)-(5)).
  N. Hansen et al. pycma 4.5, ``cma.NoiseHandler`` and its use in ``cma.fmin2``, whose
  constants and treatment are reproduced here (``tests/test_noise.py`` compares the
  measurement with pycma's on the same values).

After each generation, ``lambda_r = 2 + lambda / 20`` candidates (the first half of them
the first ones sampled, the rest the best of the others; a fractional ``lambda_r`` is
rounded at random) are evaluated again at a point moved by ``epsilon = 1e-7`` times a
sample step. With ``R`` the ranks of all ``2 lambda`` values, each re-evaluated candidate
gives

.. math::
   s_i = |\Delta_i| - \max(1, \Delta^{\lim}_i), \quad
   \Delta_i = R_i - R'_i - \operatorname{sign}(R_i - R'_i)                  \tag{2, 3}

with :math:`\Delta^{\lim}_i` the mean of the ``theta/2 = 25``-th percentiles of the rank
changes that a uniformly random new rank would give (Eq. (4)), and the noise level
:math:`s \leftarrow s + c_s(\overline{s_i} - s)`, :math:`c_s = 0.3` (Eq. (5)). While
:math:`s > 0` (noise dominates the ranking), sigma is multiplied by
:math:`\alpha_\sigma = 1 + 2/(n + 10)` (to the power ``sigma_exponent``) and the number of
evaluations averaged (by their median) into one f-value grows by the same factor up to
``maxevals``; otherwise it shrinks by :math:`\alpha^{-1/4}` down to ``minevals``.

With the default ``maxevals=1`` only sigma is treated (pycma's ``noise_handler=True``);
on strong multiplicative noise this alone can make sigma diverge, and re-evaluations
(``maxevals > 1``, e.g. pycma's documented ``maxevals=[1, 1, 30]``) are what helps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import prng, types
from evojax_cma.transforms.base import Distribution, Transform

THETA = 0.5  # percentile/100 of the rank-change limits, doubled (pycma's theta)
CUM = 0.3  # c_s, the learning rate of the noise level


class NoiseState(NamedTuple):
    """The measured noise level and the current evaluations per f-value."""

    noise_s: Array
    evaluations: Array


@dataclasses.dataclass(frozen=True)
class NoiseHandler(Transform):
    """UH-CMA-ES settings and steps (module docstring); build with `noise_handler`.

    In a chain it measures the fitness as it reaches it (the objective's values, with
    the augmented Lagrangian's penalties when constraints come after it). The generation
    step (`evojax_cma.run.step`) re-evaluates the candidates it picks.
    """

    maxevals: int = 1
    minevals: int = 1
    evaluations: float = 1.0  # evaluations per f-value at the start
    reevals: float | None = None  # candidates re-evaluated; None: 2 + popsize / 20
    epsilon: float = 1e-7  # relative perturbation of the re-evaluated candidates
    sigma_exponent: float = 1.0  # pycma's noise_change_sigma_exponent
    requires = frozenset({types.WEIGHTED})
    stateful = True

    def init(self, num_dims: int, rows: int, dtype: Any) -> NoiseState:
        """Noise level 0 and the starting evaluations per f-value."""
        del num_dims, rows
        return init_noise(self, dtype)

    def stop_defaults(self) -> dict[str, Any]:
        """``tolfacupx`` off while sigma is increased on purpose, as ``cma.fmin2`` does."""
        return {"tolfacupx": float("inf")} if self.sigma_exponent > 0 else {}

    def repeats(self, state: NoiseState) -> Array:
        """Evaluations aggregated into one f-value now."""
        return jnp.floor(state.evaluations).astype(jnp.int32)

    def reevaluation(
        self, key: Array, dist: Distribution, genotypes: Array, h: Array, popsize: Any
    ) -> tuple[Array, Array, Array]:
        """The candidates to evaluate again: ``(index, valid, moved genotypes)``.

        Each moves by ``epsilon sigma sqrt(diag C) z`` (pycma moves it by ``epsilon``
        times a full sample step of the updated distribution; epsilon is 1e-7 either way).
        """
        k_index, k_move = prng.split(key)
        index, valid = reeval_indices(k_index, h, popsize, self)
        z = prng.normal(k_move, (index.shape[0], genotypes.shape[1]), genotypes.dtype)
        step = jnp.sqrt(dist.variances)[None, :] * z
        return index, valid, genotypes[index] + self.epsilon * step

    def adapt(
        self,
        state: NoiseState,
        h: Array,
        h_again: Array,
        index: Array,
        valid: Array,
        popsize: Any,
        num_dims: int,
    ) -> tuple[NoiseState, Array]:
        """Measure the noise from the re-evaluations: ``(state, sigma factor)``."""
        s = measure(h, h_again, index, valid, popsize)
        return adapt_noise_level(state, s, num_dims, self)


def noise_handler(
    maxevals: Any = 1,
    *,
    reevals: float | None = None,
    epsilon: float = 1e-7,
    sigma_exponent: float = 1.0,
) -> NoiseHandler:
    """Noise-handling settings, with pycma's ``NoiseHandler`` meaning of `maxevals`.

    Args:
      maxevals: the largest number of evaluations aggregated into one f-value; a list
        gives ``[minevals, (start,) maxevals]`` (start: its median), as pycma.
      reevals: candidates re-evaluated per generation (default ``2 + popsize / 20``).
      epsilon: the re-evaluated points move by `epsilon` times a sample step.
      sigma_exponent: sigma is multiplied by ``alpha_sigma ** sigma_exponent`` while
        noise dominates (pycma's ``noise_change_sigma_exponent``; 0: never).

    Raises:
      ValueError: non-positive or non-integer evaluation counts, negative reevals.
    """
    values = np.atleast_1d(np.asarray(maxevals, dtype=float))
    if values.ndim != 1 or values.size == 0 or values.size > 3:
        raise ValueError(f"maxevals must be a number or a list of 1 to 3, got {maxevals!r}")
    if not np.all(np.isfinite(values)) or np.any(values < 1) or np.any(values % 1 != 0):
        raise ValueError(f"maxevals must hold integers >= 1, got {maxevals!r}")
    if reevals is not None and (not np.isfinite(reevals) or reevals <= 0):
        raise ValueError(f"reevals must be > 0 (or None), got {reevals!r}")
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
    if not (np.isfinite(sigma_exponent) and sigma_exponent >= 0):
        raise ValueError(f"sigma_exponent must be >= 0, got {sigma_exponent!r}")
    low = int(values.min()) if values.size > 1 else 1
    start = float(np.median(values)) if values.size > 2 else float(low)
    return NoiseHandler(
        maxevals=int(values.max()),
        minevals=low,
        evaluations=start,
        reevals=None if reevals is None else float(reevals),
        epsilon=float(epsilon),
        sigma_exponent=float(sigma_exponent),
    )


def init_noise(options: NoiseHandler, dtype: Any) -> NoiseState:
    """Noise level 0 and the starting evaluations per f-value."""
    return NoiseState(jnp.asarray(0.0, dtype), jnp.asarray(options.evaluations, dtype))


def max_reevals(options: NoiseHandler, rows: int) -> int:
    """Static number of rows reserved for re-evaluations."""
    expected = options.reevals if options.reevals is not None else 2 + rows / 20
    return int(expected) + 1


def reeval_indices(
    key: Array, fitness: Array, popsize: Any, options: NoiseHandler
) -> tuple[Array, Array]:
    """Which candidates to evaluate again, as pycma's ``NoiseHandler.indices``.

    Args:
      key: for the random rounding of a fractional count.
      fitness: ``(rows,)``; rows from `popsize` on are padding.
      popsize: number of real rows λ (may be traced).
      options: `NoiseHandler` settings.

    Returns:
      ``(index, valid)``, each ``(max_reevals,)``: the first ``lambda_r - lambda_r // 2``
      candidates, then the best of the others; ``valid`` marks the ``lambda_r`` in use.
    """
    rows = fitness.shape[0]
    size = max_reevals(options, rows)
    expected = options.reevals if options.reevals is not None else 2 + popsize / 20
    count = jnp.floor(expected).astype(jnp.int32)
    count = count + ((expected % 1) > prng.uniform(key)).astype(jnp.int32)
    count = jnp.minimum(count, popsize)
    first = count - count // 2
    j = jnp.arange(rows)
    rest = (j >= first) & (j < popsize)
    order = jnp.lexsort((jnp.where(jnp.isnan(fitness), jnp.inf, fitness), ~rest))
    k = jnp.arange(size)
    index = jnp.where(k < first, k, order[jnp.clip(k - first, 0, rows - 1)])
    return index, k < count


def _prctile(sorted_values: Array, count: Any, p: float) -> Array:
    """As pycma's ``Mh.prctile``, of the first `count` entries of sorted values."""
    fi = p * count / 100.0 - 0.5
    i = jnp.clip(jnp.floor(fi).astype(jnp.int32), 0, count - 1)
    j = jnp.minimum(i + 1, count - 1)
    inner = (i + 1 - fi) * sorted_values[i] + (fi - i) * sorted_values[j]
    return jnp.where(
        fi <= 0, sorted_values[0], jnp.where(fi >= count - 1, sorted_values[count - 1], inner)
    )


def measure(fitness: Array, refitness: Array, index: Array, valid: Array, popsize: Any) -> Array:
    """Mean of the rank-change measures ``s_i`` (Eqs. (2)-(4)) of the re-evaluated rows.

    Args:
      fitness: ``(rows,)`` f-values of the generation.
      refitness: ``(size,)`` new f-values of the rows ``index``.
      index: ``(size,)`` re-evaluated rows.
      valid: ``(size,)``, which entries of `index` are in use.
      popsize: number of real rows λ.
    """
    rows = fitness.shape[0]
    real = jnp.arange(rows) < popsize
    second = fitness.at[jnp.where(valid, index, rows)].set(refitness, mode="drop")
    both = jnp.concatenate([fitness, second])
    pad = jnp.concatenate([~real, ~real])
    order = jnp.lexsort((jnp.where(jnp.isnan(both), jnp.inf, both), pad))
    rank = jnp.zeros(2 * rows, jnp.int32).at[order].set(jnp.arange(2 * rows, dtype=jnp.int32))
    r0, r1 = rank[:rows][index], rank[rows:][index]
    delta = r0 - r1 - jnp.sign(r0 - r1)
    count = 2 * popsize - 1
    r = jnp.arange(1, 2 * rows)
    in_range = (jnp.arange(2 * rows - 1) < count)[None, :]

    def limit(a: Array, b: Array) -> Array:
        centre = (a + 1 - (a > b))[:, None]
        dist = jnp.sort(jnp.where(in_range, jnp.abs(r[None, :] - centre), jnp.inf), axis=1)
        return jax.vmap(lambda d: _prctile(d, count, THETA * 50))(dist)

    limits = 0.5 * (limit(r0, r1) + limit(r1, r0))
    s = jnp.abs(delta) - jnp.maximum(limits, 1.0)
    return jnp.sum(jnp.where(valid, s, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def adapt_noise_level(
    noise: NoiseState, s_mean: Array, num_dims: int, options: NoiseHandler
) -> tuple[NoiseState, Array]:
    """Update the noise level (Eq. (5)) and return ``(state, sigma factor)``."""
    alpha = 1.0 + 2.0 / (num_dims + 10)
    level = noise.noise_s + CUM * (s_mean - noise.noise_s)
    noisy = level > 0
    evaluations = jnp.where(
        noisy,
        jnp.minimum(noise.evaluations * alpha, options.maxevals),
        jnp.maximum(noise.evaluations * alpha**-0.25, options.minevals),
    )
    factor = jnp.where(noisy, alpha**options.sigma_exponent, 1.0)
    return NoiseState(level, evaluations.astype(noise.evaluations.dtype)), factor


__all__ = [
    "NoiseHandler",
    "NoiseState",
    "adapt_noise_level",
    "init_noise",
    "max_reevals",
    "measure",
    "noise_handler",
    "reeval_indices",
]
