"""The one generation step: ask, decode, evaluate, shape the fitness, tell, adapt.

Every driver runs a generation through these functions: `evojax_cma.minimize` and
`evojax_cma.minimize_restarts` call `generation` (the objective in JAX, chunked or not);
the host driver `evojax_cma.fmin` jit-compiles `propose`, `incorporate`,
`reevaluation_points` and `adapt_to_reevaluation` and evaluates on the host in between.
The transformations (encodings, bounds, constraints, noise handling) are a
`evojax_cma.transforms.Pipeline`; the objective and the constraint function are a
`Problem`. Both are static, hashable values: equal settings reuse compiled code.

How the objective is called (`fitness_keys`, `objective_values`, `chunked_fitness`: keys
per point or common, ``n_repeats``, data, chunks) is part of the step, so this module is
somewhat over 400 lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from evojax_cma.core import prng, types
from evojax_cma.core.shaping import fitness_in, select_row
from evojax_cma.transforms.base import Evaluated, Pipeline, distribution
from evojax_cma.transforms.noise import NoiseHandler


class Problem(NamedTuple):
    """The objective as the drivers call it (static; hashable by its functions).

    Attributes:
      fn: the objective: a point ``(n,)`` to a scalar, or with `batched` a population
        ``(rows, n)`` to ``(rows,)``; the data follows the point(s) where `with_data`,
        then a PRNG key where `keyed`: ``fn(x, data, key)``.
      batched: whether `fn` (and `constraints`) take whole populations.
      keyed: whether `fn` takes a key (see `fitness_keys`).
      constraints: ``g``: a point to ``(m,)`` values, ``<= 0`` feasible (or None).
      with_data: whether `fn` takes the driver's ``data`` (a traced pytree).
      n_repeats: keys per point; a point's f-value is the mean over them (keyed only).
      common_keys: every point of a generation gets the same key(s): common random
        numbers (keyed only).
      sharding: an `evojax_cma.PopulationSharding`: the evaluated points and their
        values lie split by rows over its devices (`on_devices`), or None.
    """

    fn: Callable[..., Any]
    batched: bool = False
    keyed: bool = False
    constraints: Callable[..., Any] | None = None
    with_data: bool = False
    n_repeats: int = 1
    common_keys: bool = False
    sharding: Any = None


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
    x = select_row(points, i)  # one n-vector crosses devices, not the population
    return Best(jnp.where(better, x, best.x), jnp.where(better, f[i], best.f))


def population_fitness(
    fn: Any, batched: bool, points: Array, key: Array | None = None, args: tuple[Any, ...] = ()
) -> Array:
    """``fn(points, *args)`` if `batched`, else ``fn`` vmapped over the ``(rows, n)`` points.

    With a `key`, ``fn`` is called as ``fn(points, *args, key)`` (batched) or each point
    with a key of its own: `key` split into one per row, or `key` itself when it is an
    array of ``(rows,)`` keys.
    """
    if batched:
        return fn(points, *args) if key is None else fn(points, *args, key)
    if key is None:
        return jax.vmap(lambda x: fn(x, *args))(points)
    keys = prng.split(key, points.shape[0]) if key.ndim == 0 else key
    return jax.vmap(lambda x, k: fn(x, *args, k))(points, keys)


def fitness_keys(problem: Problem, key: Array, rows: int) -> Array | None:
    """The keys of one evaluation of `rows` points (None when `problem` is not keyed).

    ``(R, rows)`` keys for a per-point objective, ``(R,)`` for a batched one (one key per
    call), R = ``problem.n_repeats``. Point i gets row i of ``split(key, rows)``, or with
    ``common_keys`` every point gets `key`; with R > 1 each of those is split into R keys
    (with common keys, the same R keys for every point, as EvoJAX's trainer does).
    """
    if not problem.keyed:
        return None
    R = problem.n_repeats
    shared = key[None] if R == 1 else prng.split(key, R)
    if problem.batched:
        return shared
    if problem.common_keys:
        return jnp.broadcast_to(shared[:, None], (R, rows))
    members = prng.split(key, rows)
    if R == 1:
        return members[None]
    return jnp.swapaxes(jax.vmap(prng.split, in_axes=(0, None))(members, R), 0, 1)


def objective_values(
    problem: Problem, points: Array, keys: Array | None, data: Any = None
) -> Array:
    """``(rows,)`` f-values of `points`: the mean over the R rows of `keys` (`fitness_keys`)."""
    args = (data,) if problem.with_data else ()
    points = on_devices(problem, points)
    if keys is None:
        values = population_fitness(problem.fn, problem.batched, points, None, args)
    elif keys.shape[0] == 1:
        values = population_fitness(problem.fn, problem.batched, points, keys[0], args)
    else:
        fn = problem.fn
        values = jax.vmap(lambda k: population_fitness(fn, problem.batched, points, k, args))
        values = jnp.mean(values(keys), axis=0)
    return on_devices(problem, values)


def on_devices(problem: Problem, x: Array) -> Array:
    """`x` (points or their values) split by rows over ``problem.sharding``'s devices.

    Each device then samples and evaluates its own rows (`evojax_cma.sharding`); without
    a sharding, `x` as it is.
    """
    return x if problem.sharding is None else problem.sharding.rows(x)


def evaluate(
    problem: Problem,
    points: Array,
    key: Array,
    repeats: Any = 1,
    max_repeats: int = 1,
    data: Any = None,
) -> tuple[Array, Array | None]:
    """``(F, G)`` of the points in JAX: F the median of `repeats` (<= `max_repeats`) calls.

    Each call averages ``problem.n_repeats`` keyed evaluations (`objective_values`).
    """
    rows = points.shape[0]
    if max_repeats == 1:
        F = objective_values(problem, points, fitness_keys(problem, key, rows), data)
    else:

        def one(k, values):
            keys = fitness_keys(problem, prng.fold_in(key, k), rows)
            return values.at[k].set(objective_values(problem, points, keys, data))

        values = jnp.full((max_repeats, points.shape[0]), jnp.nan, points.dtype)
        F = jnp.nanmedian(lax.fori_loop(0, repeats, one, values), axis=0)
    G = None
    if problem.constraints is not None:
        G = population_fitness(problem.constraints, problem.batched, on_devices(problem, points))
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


def _required_noise_handler(pipeline: Pipeline) -> tuple[int, NoiseHandler]:
    found = noise_handler_of(pipeline)
    if found is None:
        raise ValueError("the re-evaluation steps need a pipeline with noise handling")
    return found


class Reevaluation(NamedTuple):
    """The candidates the noise handler evaluates again (rows of the population)."""

    index: Array
    valid: Array
    points: Array  # decoded: what the objective sees


def reevaluation_points(
    strategy: types.Strategy,
    pipeline: Pipeline,
    key: Array,
    state: Any,
    population: Array,
    outs: tuple[Array, ...],
) -> Reevaluation:
    """The candidates the noise handler evaluates again: ``(index, valid, points)``."""
    i, noise = _required_noise_handler(pipeline)
    dist = distribution(strategy, state)
    again = noise.reevaluation(key, dist, population, outs[i], popsize_of(strategy, state))
    return Reevaluation(again[0], again[1], pipeline.decode(again[2]))


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
    i, noise = _required_noise_handler(pipeline)
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
    fn: Callable | Problem,
    key: Array,
    state: Any,
    *,
    batched: bool = False,
    decode: Callable[[Array], Array] | None = None,
    fitness_key: Array | None = None,
    data: Any = None,
) -> Array:
    """Evaluate the population of ``ask(key, state)`` chunk by chunk (``lax.map``).

    Only ``chunk_size x n`` points exist at a time; pair it with ``strategy.tell_keyed``.
    `decode` maps each chunk's genotypes to the points `fn` sees.

    `fn` may be a `Problem` (keys, data, ``n_repeats``, common keys), else
    ``Problem(fn, batched)``, keyed when a `fitness_key` is given and taking `data` when
    it is not None. A per-point objective gets the keys it would get unchunked
    (`fitness_keys` of the whole population, sliced per chunk), so chunked and unchunked
    values are equal; a batched one is called once per chunk, with `fitness_key` under
    ``common_keys``, else with ``fold_in(fitness_key, chunk)``.
    """
    ask_chunk, chunk_size = strategy.ask_chunk, strategy.chunk_size
    if ask_chunk is None or chunk_size is None:
        raise ValueError(f"strategy {strategy.name!r} has no chunked sampling")
    problem = fn if isinstance(fn, Problem) else Problem(fn, batched, fitness_key is not None)
    if data is not None:
        problem = problem._replace(with_data=True)
    f_key: Any = fitness_key
    if problem.keyed and f_key is None:
        raise ValueError("a keyed objective needs fitness_key=")
    num_chunks = strategy.popsize // chunk_size
    keys = None
    if problem.keyed and not problem.batched:  # (R, popsize) -> (chunks, R, chunk_size)
        keys = fitness_keys(problem, f_key, strategy.popsize)
        assert keys is not None
        keys = jnp.swapaxes(keys.reshape(keys.shape[0], num_chunks, chunk_size), 0, 1)

    def one(xs):
        index, chunk_keys = xs
        points = ask_chunk(key, state, index)
        if problem.keyed and problem.batched:
            sub = f_key if problem.common_keys else prng.fold_in(f_key, index)
            chunk_keys = fitness_keys(problem, sub, chunk_size)
        points = points if decode is None else decode(points)
        return objective_values(problem, points, chunk_keys, data)

    return lax.map(one, (jnp.arange(num_chunks), keys)).reshape(strategy.popsize)


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
    data: Any = None,
) -> tuple[Any, tuple[Any, ...], Best, Array]:
    """One generation in JAX; returns ``(state, tstates, best, F)``.

    ``F`` is the generation's objective values (``(rows,)``, NaN where a constraint is
    violated), for the history. `data` is passed to an objective that takes it
    (``problem.with_data``). The objective's keys come from ``fold_in(key, 1)`` in both
    modes, so chunked and unchunked evaluations see the same keys. The state's ``evals``
    counts every call of the objective (``n_repeats`` per point).

    With `chunked`, the population is sampled, evaluated and told chunk by chunk (the
    pipeline must be stateless: encodings and the bound transform).
    """
    evals_before = state.evals
    if chunked:
        F = chunked_fitness(
            strategy,
            problem,
            key,
            state,
            decode=pipeline.decode,
            fitness_key=prng.fold_in(key, 1),
            data=data,
        )
        assert strategy.tell_keyed is not None
        state = strategy.tell_keyed(key, state, F)
        F = fitness_in(F, best.f.dtype)
        best_f = jnp.minimum(best.f, jnp.min(jnp.where(jnp.isnan(F), jnp.inf, F)))
        best, G = Best(pipeline.decode(state.best_x), best_f), None
    else:
        population, state, stages = propose(strategy, pipeline, key, state, running)
        repeats = repeats_now(pipeline, tstates)
        top = max_repeats(pipeline)
        F, G = evaluate(problem, stages[-1], prng.fold_in(key, 1), repeats, top, data)
        state, tstates, outs, best = incorporate(
            strategy, pipeline, state, tstates, population, stages, F, G, best
        )
        if noise_handler_of(pipeline) is not None:
            index, valid, again = reevaluation_points(
                strategy, pipeline, prng.fold_in(key, 2), state, population, outs
            )
            F2, G2 = evaluate(problem, again, prng.fold_in(key, 3), repeats, top, data)
            state, tstates = adapt_to_reevaluation(
                strategy, pipeline, state, tstates, outs, F2, G2, index, valid, repeats
            )
    if problem.n_repeats > 1:
        calls = (state.evals - evals_before) * problem.n_repeats
        state = state._replace(evals=evals_before + calls.astype(evals_before.dtype))
    return state, tstates, best, jnp.where(feasible(G), F, jnp.nan)


__all__ = [
    "Best",
    "Problem",
    "Reevaluation",
    "adapt_to_reevaluation",
    "chunked_fitness",
    "evaluate",
    "feasible",
    "fitness_keys",
    "generation",
    "incorporate",
    "initial_best",
    "max_repeats",
    "noise_handler_of",
    "objective_values",
    "popsize_of",
    "population_fitness",
    "propose",
    "reevaluation_points",
    "repeats_now",
    "update_best",
]
