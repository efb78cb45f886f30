"""The one generation step: ask, decode, evaluate, shape the fitness, tell, adapt.

Every driver runs a generation through these functions: `evojax_cma.minimize` and
`evojax_cma.minimize_restarts` call `generation` (the objective in JAX, chunked or not);
the host driver `evojax_cma.fmin` jit-compiles `propose`, `incorporate`,
`reevaluation_points` and `adapt_to_reevaluation` and evaluates on the host in between.
The transformations (encodings, bounds, constraints, noise handling) are a
`evojax_cma.transforms.Pipeline`; the objective and the constraint function are a
`Problem`. Both are static, hashable values: equal settings reuse compiled code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from evojax_cma.core import types
from evojax_cma.core.shaping import fitness_in
from evojax_cma.transforms.base import Evaluated, Pipeline, distribution
from evojax_cma.transforms.noise import NoiseHandler


class Problem(NamedTuple):
    """The objective as the drivers call it (static; hashable by its functions).

    Attributes:
      fn: the objective: a point ``(n,)`` to a scalar, or with `batched` a population
        ``(rows, n)`` to ``(rows,)``; with `keyed` a PRNG key follows the point(s).
      batched: whether `fn` (and `constraints`) take whole populations.
      keyed: whether `fn` takes a key (a fresh one per call).
      constraints: ``g``: a point to ``(m,)`` values, ``<= 0`` feasible (or None).
    """

    fn: Callable[..., Any]
    batched: bool = False
    keyed: bool = False
    constraints: Callable[..., Any] | None = None


class Best(NamedTuple):
    """The best feasible evaluated point so far: phenotype and the objective's value."""

    x: Array
    f: Array


def popsize_of(strategy: types.Strategy, state: Any) -> Any:
    """λ of the current generation: ``params.popsize`` where the strategy masks rows."""
    if types.MASKED_POPSIZE in strategy.capabilities:
        return state.params.popsize
    return strategy.popsize


def initial_best(pipeline: Pipeline, state: Any) -> Best:
    """No point yet: the decoded mean with ``f = inf``."""
    return Best(pipeline.decode(state.mean), jnp.asarray(jnp.inf, state.mean.dtype))


def update_best(best: Best, points: Array, f: Array, popsize: Any) -> Best:
    """Fold a generation's evaluated `points` and raw `f` (NaN: infeasible) into `best`.

    `f` is taken in the dtype of ``best.f`` (the state's; finite values beyond its range
    clipped, `evojax_cma.core.shaping.fitness_in`), whatever the objective returns.
    """
    f = fitness_in(f, best.f.dtype)
    ok = (jnp.arange(f.shape[0]) < popsize) & jnp.isfinite(f)
    f = jnp.where(ok, f, jnp.inf)
    i = jnp.argmin(f)
    better = f[i] < best.f
    return Best(jnp.where(better, points[i], best.x), jnp.where(better, f[i], best.f))


def population_fitness(fn: Any, batched: bool, points: Array, key: Array | None = None) -> Array:
    """``fn(points)`` if `batched`, else ``fn`` vmapped over the ``(rows, n)`` points.

    With a `key`, ``fn`` is called as ``fn(points, key)`` (batched) or each point with a
    key of its own.
    """
    if key is None:
        return fn(points) if batched else jax.vmap(fn)(points)
    if batched:
        return fn(points, key)
    return jax.vmap(fn)(points, jax.random.split(key, points.shape[0]))


def evaluate(
    problem: Problem, points: Array, key: Array, repeats: Any = 1, max_repeats: int = 1
) -> tuple[Array, Array | None]:
    """``(F, G)`` of the points in JAX: F the median of `repeats` (<= `max_repeats`) calls."""
    key_or_none = key if problem.keyed else None
    if max_repeats == 1:
        F = population_fitness(problem.fn, problem.batched, points, key_or_none)
    else:

        def one(k, values):
            sub = jax.random.fold_in(key, k) if problem.keyed else None
            return values.at[k].set(population_fitness(problem.fn, problem.batched, points, sub))

        values = jnp.full((max_repeats, points.shape[0]), jnp.nan, points.dtype)
        F = jnp.nanmedian(lax.fori_loop(0, repeats, one, values), axis=0)
    G = None
    if problem.constraints is not None:
        G = population_fitness(problem.constraints, problem.batched, points)
        G = jnp.asarray(G, points.dtype)
    return F, G


def feasible(G: Array | None) -> Any:
    """Rows with every ``g <= 0`` (all rows without constraints)."""
    return True if G is None else jnp.all(G <= 0, axis=-1)


def propose(
    strategy: types.Strategy, pipeline: Pipeline, key: Array, state: Any, running: Any = True
) -> tuple[Array, Any, list[Array]]:
    """``ask``, then decode: ``(genotypes, state, stages)``; ``stages[-1]`` is evaluated.

    ``running=False`` (a finished run of a batch) lets the strategy skip optional work
    such as an eigendecomposition.
    """
    population, state = strategy.ask(key, state, running=running)
    return population, state, pipeline.stages(population)


def incorporate(
    strategy: types.Strategy,
    pipeline: Pipeline,
    state: Any,
    tstates: tuple[Any, ...],
    population: Array,
    stages: list[Array],
    F: Array,
    G: Array | None,
    best: Best,
) -> tuple[Any, tuple[Any, ...], tuple[Array, ...], Best]:
    """Shape the fitness through the pipeline, ``tell``, let the transformations adapt.

    Returns ``(state, tstates, fitness per transformation, best)``.
    """
    lam = popsize_of(strategy, state)
    ev = Evaluated(population, population, population, F, G, lam, distribution(strategy, state))
    told, tstates, outs = pipeline.shape_fitness(tstates, F, ev, stages)
    best = update_best(best, stages[-1], jnp.where(feasible(G), F, jnp.nan), lam)
    state = strategy.tell(state, population, told)
    return state, pipeline.after_tell(tstates, outs, ev, stages), outs, best


def noise_handler_of(pipeline: Pipeline) -> tuple[int, NoiseHandler] | None:
    """The pipeline's `NoiseHandler` and its position (None without noise handling)."""
    for i, t in enumerate(pipeline.transforms):
        if isinstance(t, NoiseHandler):
            return i, t
    return None


def repeats_now(pipeline: Pipeline, tstates: tuple[Any, ...]) -> Any:
    """Evaluations aggregated into one f-value in this generation (1 without noise)."""
    found = noise_handler_of(pipeline)
    return 1 if found is None else found[1].repeats(tstates[found[0]])


def max_repeats(pipeline: Pipeline) -> int:
    """The most evaluations aggregated into one f-value (static)."""
    found = noise_handler_of(pipeline)
    return 1 if found is None else found[1].maxevals


def reevaluation_points(
    strategy: types.Strategy,
    pipeline: Pipeline,
    key: Array,
    state: Any,
    population: Array,
    outs: tuple[Array, ...],
) -> tuple[Array, Array, Array]:
    """The candidates the noise handler evaluates again: ``(index, valid, points)``."""
    found = noise_handler_of(pipeline)
    assert found is not None
    i, noise = found
    dist = distribution(strategy, state)
    index, valid, moved = noise.reevaluation(
        key, dist, population, outs[i], popsize_of(strategy, state)
    )
    return index, valid, pipeline.decode(moved)


def adapt_to_reevaluation(
    strategy: types.Strategy,
    pipeline: Pipeline,
    state: Any,
    tstates: tuple[Any, ...],
    outs: tuple[Array, ...],
    F2: Array,
    G2: Array | None,
    index: Array,
    valid: Array,
    repeats: Any,
) -> tuple[Any, tuple[Any, ...]]:
    """Measure the noise from the re-evaluations, scale sigma, count the evaluations."""
    found = noise_handler_of(pipeline)
    assert found is not None
    i, noise = found
    lam = popsize_of(strategy, state)
    h2 = pipeline.penalize(tstates, F2, G2, start=i + 1)
    noise_state, factor = noise.adapt(tstates[i], outs[i], h2, index, valid, lam, strategy.num_dims)
    extra = (repeats - 1) * lam + repeats * jnp.sum(valid)
    state = state._replace(
        sigma=state.sigma * factor, evals=state.evals + jnp.asarray(extra, state.evals.dtype)
    )
    return state, tstates[:i] + (noise_state,) + tstates[i + 1 :]


def chunked_fitness(
    strategy: types.Strategy,
    fn: Callable,
    key: Array,
    state: Any,
    *,
    batched: bool = False,
    decode: Callable[[Array], Array] | None = None,
) -> Array:
    """Evaluate the population of ``ask(key, state)`` chunk by chunk (``lax.map``).

    Only ``chunk_size x n`` points exist at a time; pair it with ``strategy.tell_keyed``.
    `decode` maps each chunk's genotypes to the points `fn` sees.
    """
    ask_chunk, chunk_size = strategy.ask_chunk, strategy.chunk_size
    if ask_chunk is None or chunk_size is None:
        raise ValueError(f"strategy {strategy.name!r} has no chunked sampling")

    def one(index):
        points = ask_chunk(key, state, index)
        return population_fitness(fn, batched, points if decode is None else decode(points))

    num_chunks = strategy.popsize // chunk_size
    return lax.map(one, jnp.arange(num_chunks)).reshape(strategy.popsize)


def generation(
    strategy: types.Strategy,
    pipeline: Pipeline,
    problem: Problem,
    key: Array,
    state: Any,
    tstates: tuple[Any, ...],
    best: Best,
    running: Any = True,
    chunked: bool = False,
) -> tuple[Any, tuple[Any, ...], Best, Array]:
    """One generation in JAX; returns ``(state, tstates, best, F)``.

    ``F`` is the generation's objective values (``(rows,)``, NaN where a constraint is
    violated), for the history.

    With `chunked`, the population is sampled, evaluated and told chunk by chunk (the
    pipeline must be stateless: encodings and the bound transform).
    """
    if chunked:
        decode = pipeline.decode
        F = chunked_fitness(
            strategy, problem.fn, key, state, batched=problem.batched, decode=decode
        )
        assert strategy.tell_keyed is not None
        state = strategy.tell_keyed(key, state, F)
        F = fitness_in(F, best.f.dtype)
        best_f = jnp.minimum(best.f, jnp.min(jnp.where(jnp.isnan(F), jnp.inf, F)))
        return state, tstates, Best(pipeline.decode(state.best_x), best_f), F
    population, state, stages = propose(strategy, pipeline, key, state, running)
    repeats = repeats_now(pipeline, tstates)
    top = max_repeats(pipeline)
    F, G = evaluate(problem, stages[-1], jax.random.fold_in(key, 1), repeats, top)
    state, tstates, outs, best = incorporate(
        strategy, pipeline, state, tstates, population, stages, F, G, best
    )
    if noise_handler_of(pipeline) is not None:
        index, valid, again = reevaluation_points(
            strategy, pipeline, jax.random.fold_in(key, 2), state, population, outs
        )
        F2, G2 = evaluate(problem, again, jax.random.fold_in(key, 3), repeats, top)
        state, tstates = adapt_to_reevaluation(
            strategy, pipeline, state, tstates, outs, F2, G2, index, valid, repeats
        )
    return state, tstates, best, jnp.where(feasible(G), F, jnp.nan)


__all__ = [
    "Best",
    "Problem",
    "adapt_to_reevaluation",
    "chunked_fitness",
    "evaluate",
    "feasible",
    "generation",
    "incorporate",
    "initial_best",
    "max_repeats",
    "noise_handler_of",
    "popsize_of",
    "population_fitness",
    "propose",
    "reevaluation_points",
    "repeats_now",
    "update_best",
]
