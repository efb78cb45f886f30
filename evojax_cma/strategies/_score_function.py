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

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import progress, termination, validation
from evojax_cma.core.gaussian import NoisePlan, all_noise, noise_chunk, utility_sums
from evojax_cma.core.shaping import fitness_in, rank_order, rank_population
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


def _cast_float(p: Any, dtype: Any) -> Array:
    """A params leaf in the state's dtype if floating (integers keep theirs)."""
    p = jnp.asarray(p)
    return p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p


def bounded(v: Array) -> Array:
    """`v` scaled down uniformly (direction kept) so that ``max |v| <= sqrt(finfo.max) / 4``.

    Guards the optimiser: Adam's second moment squares the gradient, and raw utilities of
    ``|f| >= 1e20`` would overflow it in float32 (a uniform rescaling, which Adam ignores
    and which keeps an SGD step finite). Values below the limit are unchanged.
    """
    limit = float(np.sqrt(np.finfo(v.dtype).max)) / 4
    size = jnp.max(jnp.abs(v))
    return v * jnp.where(size > limit, limit / jnp.where(size > limit, size, 1.0), 1.0)


def sigma_floor(sigma: Array, mean: Array) -> Array:
    """The least σ a decaying or learned σ may reach: ``min(σ, max(eps max|m|, sqrt(tiny)))``.

    Below ``eps max|m|`` a step rounds to nothing at the mean, below ``sqrt(tiny)`` (the
    smallest σ0 accepted) ``1/σ`` in the gradient overflows its square; a σ already below
    stays where it is (the floor never raises σ).
    """
    info = jnp.finfo(mean.dtype)
    floor = jnp.maximum(info.eps * jnp.max(jnp.abs(mean)), jnp.sqrt(info.tiny))
    return jnp.minimum(sigma, floor)


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
    params_ok: Callable[[Any], Any] | None = None,
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
      check_params: validates user params before tracing (type, shapes, concrete values
        in range), returns them; the drivers call it too.
      init_sigma: ``(sigma0 array, params) -> sigma`` of the state.
      init_opt: ``(mean, sigma, params) -> opt_state``.
      options: the static options to record in ``Strategy.options``: every setting that
        changes the behaviour (strategies compare equal, and share compiled code, by them).
      stop_defaults: default termination thresholds.
      capabilities: the `Strategy.capabilities` to declare.
      params_ok: ``params -> traced bool`` for ``invalid_input`` (the jittable twin of
        `check_params`).
    """
    n, lam = plan.num_dims, plan.popsize

    def init(key: Array, x0: Any, sigma0: Any, params: Any = None) -> GaussianState:
        """Start at mean `x0` with step size `sigma0` (`key` is unused)."""
        del key
        params = default_params() if params is None else check_params(params)
        x0 = progress.start_point(x0, sigma0, n)
        params = jax.tree.map(lambda p: _cast_float(p, x0.dtype), params)
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
        validation.check_key(key)
        check_state(state)
        return points(state, all_noise(plan, key, state.mean.dtype)), state

    params_cls = type(default_params())

    def check_state(state: Any) -> None:
        validation.check_state(name, state, GaussianState, params_cls)

    def ask_chunk(key: Array, state: GaussianState, index: Any) -> Array:
        """The ``chunk_size`` points of chunk `index` of ``ask(key, state)``."""
        validation.check_key(key)
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
        return bounded(jnp.where(jnp.isfinite(u), u, 0.0))

    def prepare(state: GaussianState, fitness: Any):
        check_state(state)
        validation.check_population("fitness", fitness, (lam,))
        fitness = fitness_in(fitness, state.mean.dtype)
        order, f_sorted = rank_order(fitness)
        return utilities(state, fitness), order, f_sorted

    def tell(state: GaussianState, population: Any, fitness: Any) -> GaussianState:
        """Update from the evaluated population: ``ε = (x - m) / σ`` for each point."""
        check_state(state)
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
    functions.update(ask_chunk=ask_chunk, tell_keyed=tell_keyed, check_params=check_params)
    options = {"antithetic": plan.antithetic, "chunk_size": plan.chunk_size, **options}
    return build_strategy(
        name,
        n,
        lam,
        options,
        stop_defaults,
        functions,
        capabilities,
        chunk_size=plan.chunk_size,
        params_ok=params_ok,
    )
