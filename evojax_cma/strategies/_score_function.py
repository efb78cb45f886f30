"""The ask/tell skeleton shared by OpenAI-ES and variational optimisation.

Both sample ``x_i = m + σ ⊙ ε_i`` (σ a scalar or a vector), shape the fitness into
utilities ``u`` and form gradient estimates from sums ``Σ_i u_i φ(ε_i)`` that an optax
optimiser turns into updates. This module holds what is common: the state, sampling by
chunks (`evojax_cma.core.gaussian`), the two tells (from the population, or from the key
with the noise regenerated chunk by chunk), best-point bookkeeping
(`evojax_cma.core.progress`) and termination. Each strategy module supplies its features
φ, its update and its paper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from jax import Array

from evojax_cma.core import progress, termination, validation
from evojax_cma.core.gaussian import NoisePlan, all_noise, noise_chunk, utility_sums
from evojax_cma.core.shaping import rank_order, rank_population
from evojax_cma.core.types import Strategy, build_strategy


@progress.pytree_state
@dataclasses.dataclass(frozen=True, eq=False)
class GaussianState(progress.RunState):
    """State of a score-function strategy (`evojax_cma.open_es`, `evojax_cma.variational`).

    Attributes:
      sigma: standard deviation, a scalar (OpenAI-ES) or one per coordinate (variational).
      opt_state: the optax state(s).
      params: the strategy's params.
    """

    opt_state: Any


Update = Callable[[GaussianState, tuple[Array, ...]], tuple[Array, Array, Any]]


def score_function_strategy(
    *,
    name: str,
    plan: NoisePlan,
    shaping_fn: Callable[[Array], Array],
    features: Callable[[Array], tuple[Array, ...]],
    update: Update,
    default_params: Callable[[], Any],
    check_params: Callable[[Any], Any],
    init_sigma: Callable[[Array, Any], Array],
    init_opt: Callable[[Array, Array, Any], Any],
    options: dict[str, Any],
    stop_defaults: dict[str, Any],
    capabilities: frozenset[str],
) -> Strategy:
    """Assemble a `Strategy` from a strategy's features and update rule.

    Args:
      name: the strategy's name.
      plan: popsize, dimension, chunking and antithetic flag.
      shaping_fn: fitness ``(λ,)`` -> utilities ``(λ,)``, lower is better.
      features: ``ε (k, n)`` -> tuple of ``(k, n)`` arrays φ whose utility-weighted sums
        the update needs.
      update: ``(state, sums) -> (mean, sigma, opt_state)``; ``sums[k] = Σ_i u_i φ_k(ε_i)``.
      default_params: ``() -> params``.
      check_params: validates user params before tracing, returns them.
      init_sigma: ``(sigma0 array, params) -> sigma`` of the state.
      init_opt: ``(mean, sigma, params) -> opt_state``.
      options: the static options to record in ``Strategy.options``: every setting that
        changes the behaviour (strategies compare equal, and share compiled code, by them).
      stop_defaults: default termination thresholds.
      capabilities: the `Strategy.capabilities` to declare.
    """
    n, lam = plan.num_dims, plan.popsize

    def init(key: Array, x0: Any, sigma0: Any, params: Any = None) -> GaussianState:
        """Start at mean `x0` with step size `sigma0` (`key` is unused)."""
        del key
        params = default_params() if params is None else check_params(params)
        x0 = progress.start_point(x0, sigma0, n)
        sigma = init_sigma(jnp.asarray(sigma0, x0.dtype), params)
        return GaussianState(
            mean=x0,
            sigma=sigma,
            opt_state=init_opt(x0, sigma, params),
            params=params,
            **progress.initial_progress(x0, sigma0, n, lam),
        )

    def points(state: GaussianState, eps: Array) -> Array:
        return state.mean[None, :] + jnp.reshape(state.sigma, (1, -1)) * eps

    def ask(
        key: Array, state: GaussianState, *, running: Any = True
    ) -> tuple[Array, GaussianState]:
        """All λ points ``m + σ ε``; chunk c's noise comes from ``fold_in(key, c)``."""
        del running
        return points(state, all_noise(plan, key, state.mean.dtype)), state

    def ask_chunk(key: Array, state: GaussianState, index: Any) -> Array:
        """The ``chunk_size`` points of chunk `index` of ``ask(key, state)``."""
        return points(state, noise_chunk(plan, key, index, state.mean.dtype))

    def finish(state, sums, best_x, f_sorted) -> GaussianState:
        mean, sigma, opt_state = update(state, sums)
        return GaussianState(
            mean=mean,
            sigma=sigma,
            opt_state=opt_state,
            params=state.params,
            **progress.next_progress(state, best_x, f_sorted),
        )

    def utilities(state: GaussianState, fitness: Array) -> Array:
        # a non-finite utility (raw shaping of a NaN) would make the whole update NaN
        u = shaping_fn(fitness).astype(state.mean.dtype)
        return jnp.where(jnp.isfinite(u), u, 0.0)

    def prepare(state: GaussianState, fitness: Any):
        validation.check_population("fitness", fitness, (lam,))
        fitness = jnp.asarray(fitness, state.mean.dtype)
        order, f_sorted = rank_order(fitness)
        return utilities(state, fitness), order, f_sorted

    def tell(state: GaussianState, population: Any, fitness: Any) -> GaussianState:
        """Update from the evaluated population: ``ε = (x - m) / σ`` for each point."""
        validation.check_population("population", population, (lam, n))
        population, fitness, order, f_sorted = rank_population(population, fitness, state.mean)
        u = utilities(state, fitness)
        eps = (population - state.mean[None, :]) / jnp.reshape(state.sigma, (1, -1))
        sums = tuple(u @ phi for phi in features(eps))
        return finish(state, sums, population[order[0]], f_sorted)

    def tell_keyed(key: Array, state: GaussianState, fitness: Any) -> GaussianState:
        """Update from the ``ask`` key, regenerating the noise chunk by chunk.

        Memory is ``chunk_size x n``: the population is never formed. The points must be
        those `ask_chunk` produced with this key and state.
        """
        u, order, f_sorted = prepare(state, fitness)
        sums = utility_sums(plan, key, u, features, state.mean.dtype)
        best = ask_chunk(key, state, order[0] // plan.chunk_size)[order[0] % plan.chunk_size]
        return finish(state, sums, best, f_sorted)

    def summary(state: GaussianState) -> termination.DistributionSummary:
        """σ as a geometric-mean scale times per-coordinate factors (termination, drivers)."""
        sigma_vec = jnp.broadcast_to(state.sigma, (n,))
        scale = jnp.exp(jnp.mean(jnp.log(sigma_vec)))
        return termination.diagonal_summary(state.mean, scale, state.sigma0, sigma_vec / scale)

    functions: dict[str, Callable[..., Any]] = dict(
        default_params=default_params, init=init, ask=ask, tell=tell, summary=summary
    )
    functions.update(ask_chunk=ask_chunk, tell_keyed=tell_keyed)
    options = {"antithetic": plan.antithetic, "chunk_size": plan.chunk_size, **options}
    return build_strategy(
        name, n, lam, options, stop_defaults, functions, capabilities, chunk_size=plan.chunk_size
    )
