"""The ask/tell skeleton shared by OpenAI-ES, variational optimisation and NSR-ES.

All sample ``x_i = m + σ ⊙ ε_i`` (σ a scalar or a vector; ε Gaussian, Laplace or
Student-t, `evojax_cma.core.gaussian.Perturbation`), shape the fitness into utilities
``u`` and form gradient estimates from sums ``Σ_i u_i φ(ε_i)`` of the perturbation's score
functions φ, which an optax optimiser turns into updates. This module holds what is
common: the factory arguments they share (`common_settings`), the state, sampling by
chunks, the two tells (from the population, or from the key with the noise regenerated
chunk by chunk), an optional second objective blended into the utilities (`Secondary`,
NSR-ES's novelty), best-point bookkeeping (`evojax_cma.core.progress`) and termination.
Params and their checks come from `evojax_cma.core.gaussian.hyperparameters`. Each
strategy module supplies its update and its paper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array, lax

from evojax_cma.core import hyperparams, progress, termination, validation
from evojax_cma.core.gaussian import (
    NoisePlan,
    Shaping,
    all_noise,
    check_chunking,
    noise_chunk,
    perturbation,
    resolve_shaping,
    utility_sums,
)
from evojax_cma.core.shaping import fitness_in, rank_order, rank_population, select_row
from evojax_cma.core.types import CHUNKED, Strategy, build_strategy, summary_metrics


@progress.pytree_state
@dataclasses.dataclass(frozen=True, eq=False)
class GaussianState(progress.RunState):
    """State of a score-function strategy (`evojax_cma.open_es`, `evojax_cma.variational`).

    Attributes:
      sigma: standard deviation, a scalar (OpenAI-ES) or one per coordinate (variational).
      opt_state: the optax state(s); with a `Secondary` objective (NSR-ES) the pair
        ``(optax state, its state)``, e.g. the novelty archive.
      params: the strategy's params.
      grad_norm: the norm of the last search-gradient estimate of the mean (0 before a
        ``tell``), a per-generation metric (``Strategy.metrics``).
      step_size: the norm of the update the optimiser last applied to the mean.
    """

    opt_state: Any
    grad_norm: Array
    step_size: Array


Update = Callable[[GaussianState, tuple[Array, ...]], tuple[Array, Array, Any, Array]]
"""``(state, sums) -> (mean, sigma, opt_state, grad)``; ``grad`` is the mean's gradient
estimate handed to the optimiser (its norm is a metric)."""


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


def safe_norm(v: Array) -> Array:
    """``‖v‖₂`` without overflow of the squares (scaled by ``max |v|``; 0 for v = 0)."""
    size = jnp.max(jnp.abs(v))
    scale = jnp.where(size > 0, size, 1.0)
    return size * jnp.sqrt(jnp.sum((v / scale) ** 2))


def sigma_floor(sigma: Array, mean: Array) -> Array:
    """The least σ a decaying or learned σ may reach: ``min(σ, max(eps max|m|, sqrt(tiny)))``.

    Below ``eps max|m|`` a step rounds to nothing at the mean, below ``sqrt(tiny)`` (the
    smallest σ0 accepted) ``1/σ`` in the gradient overflows its square; a σ already below
    stays where it is (the floor never raises σ).
    """
    info = jnp.finfo(mean.dtype)
    floor = jnp.maximum(info.eps * jnp.max(jnp.abs(mean)), jnp.sqrt(info.tiny))
    return jnp.minimum(sigma, floor)


class Settings(NamedTuple):
    """The checked arguments every score-function factory takes (`common_settings`).

    Attributes:
      name: the strategy's name.
      plan: popsize, dimension, chunking, antithetic flag and the perturbation's density.
      shaping_fn: fitness ``(λ,)`` -> utilities ``(λ,)``, lower is better.
      options: the static settings to record in ``Strategy.options``.
      stop_defaults: the user's default termination thresholds (pycma names).
    """

    name: str
    plan: NoisePlan
    shaping_fn: Shaping
    options: dict[str, Any]
    stop_defaults: dict[str, Any]


SHARED_OPTIONS: dict[str, Any] = dict(
    optimizer=optax.adam,
    learning_rate=0.01,
    antithetic=True,
    shaping="centered_ranks",
    chunk_size=None,
    perturbation="gaussian",
    df=None,
    weight_decay=0.0,
)
"""The keywords every score-function factory takes, with their defaults (each factory's
docstring describes them); they arrive with the pycma stop options in ``**options``."""


def common_settings(
    name: str, num_dims: Any, popsize: Any, options: dict[str, Any]
) -> tuple[Settings, dict[str, Any]]:
    """Check the arguments that every score-function factory shares.

    Args:
      name: the strategy's name (error messages, ``Strategy.name``).
      num_dims: n, >= 1.
      popsize: λ, >= 2 (even with antithetic sampling).
      options: the factory's ``**options``: `SHARED_OPTIONS` names and pycma stop names.

    Returns:
      The `Settings`, and ``optimizer``, ``learning_rate`` (a float) and
      ``weight_decay`` for the strategy's own use.

    Raises:
      TypeError, ValueError: a bad value, naming the argument (an unknown option, popsize
      odd with antithetic sampling, an unknown perturbation or shaping, df <= 2, ...).
    """
    valid = set(termination.STOP_NAMES) | set(SHARED_OPTIONS)
    validation.check_options(f"{name} option(s)", options, valid)
    given = {**SHARED_OPTIONS, **{k: v for k, v in options.items() if k in SHARED_OPTIONS}}
    n = validation.check_int("num_dims", num_dims, 1)
    lam = validation.check_int("popsize", popsize, 2)
    validation.check_rows("popsize", lam, n)
    antithetic = given["antithetic"]
    if not isinstance(antithetic, bool):
        raise TypeError(f"antithetic must be a bool, got {antithetic!r}")
    chunk_size = validation.integer("chunk_size", given["chunk_size"])
    density = perturbation(given["perturbation"], given["df"])
    settings = Settings(
        name=name,
        plan=NoisePlan(lam, n, check_chunking(lam, chunk_size, antithetic), antithetic, density),
        shaping_fn=resolve_shaping(given["shaping"]),
        options=dict(shaping=given["shaping"], perturbation=density.name, df=density.df),
        stop_defaults={k: v for k, v in options.items() if k not in SHARED_OPTIONS},
    )
    own = dict(
        optimizer=given["optimizer"],
        learning_rate=validation.real_number("learning_rate", given["learning_rate"]),
        weight_decay=given["weight_decay"],
    )
    return settings, own


class Secondary(NamedTuple):
    """A second objective of the points, blended into the utilities (NSR-ES's novelty).

    Utilities become ``w shape(f) + (1 - w) shape(g)`` (``shape`` the strategy's fitness
    shaping) and the objective keeps a state of its own beside the optax state.

    Attributes:
      init: ``mean (n,) -> aux``, its state at ``init``.
      values: ``(aux, points (k, n)) -> g (k,)``, lower is better (NaN ranks last).
      update: ``(aux, new mean (n,)) -> aux``, after each step of the mean.
      weight: ``params -> w``, the fitness's weight in [0, 1].
    """

    init: Callable[[Array], Any]
    values: Callable[[Any, Array], Array]
    update: Callable[[Any, Array], Any]
    weight: Callable[[Any], Array]


def score_function_strategy(
    settings: Settings,
    *,
    learn_scale: bool,
    update: Update,
    default_params: Callable[..., Any],
    schema: hyperparams.Schema,
    init_sigma: Callable[[Array, Any], Array],
    init_opt: Callable[[Array, Array, Any], Any],
    options: dict[str, Any],
    secondary: Secondary | None = None,
) -> Strategy:
    """Assemble a `Strategy` from a strategy's update rule.

    Args:
      settings: the shared arguments, from `common_settings`.
      learn_scale: whether the update needs ``Σ_i u_i (ε_i ψ(ε_i) - 1)`` (the score
        w.r.t. log σ) besides ``Σ_i u_i ψ(ε_i)`` (the score w.r.t. the mean, over σ).
      update: ``(state, sums) -> (mean, sigma, opt_state, grad)``; ``sums`` holds those
        one or two sums; ``grad`` is the mean's gradient estimate (see `Update`).
      default_params: ``(**overrides) -> params``, from `hyperparameters`.
      schema: the params' checks, from `hyperparameters`.
      init_sigma: ``(sigma0 array, params) -> sigma`` of the state.
      init_opt: ``(mean, sigma, params) -> opt_state``.
      options: the strategy's own static options to record in ``Strategy.options`` (with
        the settings' ones): every setting that changes the behaviour (strategies compare
        equal, and share compiled code, by them).
      secondary: a second objective blended into the utilities (NSR-ES), or None.
    """
    name, plan, shaping_fn = settings.name, settings.plan, settings.shaping_fn
    n, lam = plan.num_dims, plan.popsize
    density = plan.perturbation
    check_params = schema.check

    def features(eps: Array) -> tuple[Array, ...]:
        return (
            (density.score(eps), density.scale_score(eps)) if learn_scale else (density.score(eps),)
        )

    def init(key: Array, x0: Any, sigma0: Any, params: Any = None) -> GaussianState:
        """Start at mean `x0` with step size `sigma0` (`key` is unused)."""
        del key
        params = default_params() if params is None else check_params(params)
        x0 = progress.start_point(x0, sigma0, n)
        params = jax.tree.map(lambda p: _cast_float(p, x0.dtype), params)
        sigma = init_sigma(jnp.asarray(sigma0, x0.dtype), params)
        opt_state = init_opt(x0, sigma, params)
        if secondary is not None:
            opt_state = (opt_state, secondary.init(x0))
        return GaussianState(
            mean=x0,
            sigma=sigma,
            opt_state=opt_state,
            grad_norm=jnp.zeros((), x0.dtype),
            step_size=jnp.zeros((), x0.dtype),
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
        if secondary is None:
            mean, sigma, opt_state, grad = update(state, sums)
        else:
            opt, aux = state.opt_state
            mean, sigma, opt, grad = update(state._replace(opt_state=opt), sums)
            opt_state = (opt, secondary.update(aux, mean))
        return GaussianState(
            mean=mean,
            sigma=sigma,
            opt_state=opt_state,
            grad_norm=safe_norm(grad.astype(mean.dtype)),
            step_size=safe_norm(mean - state.mean),
            params=state.params,
            **progress.next_progress(state, best_x, f_sorted),
        )

    def utilities(state: GaussianState, fitness: Array, other: Array | None) -> Array:
        u = shaping_fn(fitness).astype(state.mean.dtype)
        if secondary is not None and other is not None:
            w = jnp.asarray(secondary.weight(state.params), state.mean.dtype)
            u = w * u + (1 - w) * shaping_fn(other).astype(state.mean.dtype)
        # a non-finite utility (raw shaping of a NaN) would make the whole update NaN
        return bounded(jnp.where(jnp.isfinite(u), u, 0.0))

    def keyed_secondary(key: Array, state: GaussianState) -> Array | None:
        """The second objective of every point, chunk by chunk (``chunk_size`` rows at a time)."""
        if secondary is None:
            return None
        aux, values = state.opt_state[1], secondary.values
        by_chunk = lax.map(
            lambda c: values(aux, ask_chunk(key, state, c)), jnp.arange(plan.num_chunks)
        )
        return by_chunk.reshape(lam)

    def prepare(key: Array, state: GaussianState, fitness: Any):
        check_state(state)
        validation.check_population("fitness", fitness, (lam,))
        fitness = fitness_in(fitness, state.mean.dtype)
        order, f_sorted = rank_order(fitness)
        return utilities(state, fitness, keyed_secondary(key, state)), order, f_sorted

    def tell(state: GaussianState, population: Any, fitness: Any) -> GaussianState:
        """Update from the evaluated population: ``ε = (x - m) / σ`` for each point."""
        check_state(state)
        validation.check_population("population", population, (lam, n))
        population, fitness, order, f_sorted = rank_population(population, fitness, state.mean)
        other = None if secondary is None else secondary.values(state.opt_state[1], population)
        u = utilities(state, fitness, other)
        eps = (population - state.mean[None, :]) / jnp.reshape(state.sigma, (1, -1))
        sums = tuple(u @ phi for phi in features(eps))
        return finish(state, sums, select_row(population, order[0]), f_sorted)

    def tell_keyed(key: Array, state: GaussianState, fitness: Any) -> GaussianState:
        """Update from the ``ask`` key, regenerating the noise chunk by chunk.

        Memory is ``chunk_size x n``: the population is never formed. The points must be
        those `ask_chunk` produced with this key and state.
        """
        u, order, f_sorted = prepare(key, state, fitness)
        sums = utility_sums(plan, key, u, features, state.mean.dtype)
        best = ask_chunk(key, state, order[0] // plan.chunk_size)[order[0] % plan.chunk_size]
        return finish(state, sums, best, f_sorted)

    def summary(state: GaussianState) -> termination.DistributionSummary:
        """σ as a geometric-mean scale times per-coordinate factors (termination, drivers)."""
        sigma_vec = jnp.broadcast_to(state.sigma, (n,))
        scale = jnp.exp(jnp.mean(jnp.log(sigma_vec)))
        return termination.diagonal_summary(state.mean, scale, state.sigma0, sigma_vec / scale)

    def metrics(state: GaussianState) -> dict[str, Array]:
        """`summary_metrics` and the gradient norm and step size of the last ``tell``."""
        return {
            **summary_metrics(summary, state),
            "grad_norm": state.grad_norm,
            "step_size": state.step_size,
        }

    functions: dict[str, Callable[..., Any]] = dict(
        default_params=default_params, init=init, ask=ask, tell=tell, summary=summary
    )
    functions["metrics"] = metrics
    functions.update(ask_chunk=ask_chunk, tell_keyed=tell_keyed, check_params=check_params)
    options = {
        "antithetic": plan.antithetic,
        "chunk_size": plan.chunk_size,
        **settings.options,
        **options,
    }
    stops = settings.stop_defaults
    return build_strategy(
        name,
        n,
        lam,
        options,
        stops,
        functions,
        {CHUNKED},
        chunk_size=plan.chunk_size,
        params_ok=schema.ok,
    )
