"""What stands between sampled points and the objective: encodings, bounds, constraints, noise.

One home for the evaluation step that every driver shares (`evojax_cma.minimize`,
`evojax_cma.minimize_restarts`, `evojax_cma.fmin`):

1. ``phenotypes(setup, X)``: decode the sampled genotypes (user encoding, then the bound
   handler: pycma's ``BoundTransform`` map or ``BoundPenalty``'s projection), giving the
   points the objective sees, always inside the bounds;
2. the driver evaluates the objective there (in JAX or on the host), as the median of
   ``evaluations`` calls under noise handling, and the constraints ``g(x) <= 0``;
3. the augmented Lagrangian (`evojax_cma.core.constraints`) adds its penalties, then
   ``told_fitness(...)`` the adaptive bound penalty where chosen: the fitness the strategy
   is told;
4. after ``tell``, the Lagrangian coefficients adapt and the noise handler
   (`evojax_cma.core.noise`) re-evaluates a few candidates and may increase sigma.

The per-run state of 3 and 4 travels as `Aux`. `generation` is steps 1-4 in JAX, for the
jitted drivers; `evojax_cma.fmin` calls the same pieces around host evaluations.
The strategy itself only ever sees genotypes, as evaluated (``tell`` takes them as they
were sampled).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import constraints as al_lib
from evojax_cma.core import noise as noise_lib
from evojax_cma.core.encoding import (
    Encoding,
    bound_transform,
    chain,
    check_bounds,
    clip_encoding,
    warn_if_outside,
)
from evojax_cma.core.noise import NoiseOptions
from evojax_cma.core.penalty import PenaltyState, bound_penalty_fitness, init_penalty
from evojax_cma.core.validation import is_concrete

BOUND_HANDLERS = ("transform", "penalty")
"""pycma's ``BoundaryHandler`` choices: ``BoundTransform`` (default) and ``BoundPenalty``."""


class Setup(NamedTuple):
    """Static description of the evaluation step (hashable: a jit static argument)."""

    encoding: Encoding | None  # genotype -> phenotype before the bound handler
    bounds: tuple[tuple[float, ...], tuple[float, ...]] | None
    bound_handler: str
    constraints: Callable | None = None  # g(x) -> (m,), feasible where <= 0
    num_constraints: int = 0
    noise: NoiseOptions | None = None
    keyed: bool = False  # the objective takes a PRNG key after the point(s)

    @property
    def penalized(self) -> bool:
        """Whether the adaptive bound penalty is in use."""
        return self.bounds is not None and self.bound_handler == "penalty"

    @property
    def max_evaluations(self) -> int:
        """The most evaluations aggregated into one f-value (1 without noise handling)."""
        return 1 if self.noise is None else self.noise.maxevals


def make_setup(
    num_dims: int,
    bounds: Any = None,
    bound_handler: str = "transform",
    encoding: Encoding | None = None,
    *,
    constraints: Callable | None = None,
    noise_handling: bool | NoiseOptions | None = None,
    keyed: bool = False,
    batched: bool = False,
    x0: Any = None,
) -> Setup:
    """Validate the user's bounds, encoding, constraints and noise settings before tracing.

    Args:
      num_dims: n.
      bounds: None or ``(lower, upper)``, each a scalar or ``(n,)`` (±inf allowed).
      bound_handler: ``"transform"`` or ``"penalty"``.
      encoding: an `evojax_cma.Encoding` applied before the bounds, or None.
      constraints: None or a JAX function ``g`` of a point ``(n,)`` (with `batched`: of
        ``(popsize, n)``) returning ``(m,)`` (``(popsize, m)``) values, ``<= 0`` feasible.
      noise_handling: None/False, True (pycma's ``noise_handler=True``) or
        `evojax_cma.noise_handler(...)` settings.
      keyed: whether the objective takes a PRNG key after the point(s).
      batched: whether the functions take whole populations.
      x0: the initial phenotype, where known: `constraints` is tried on it.

    Raises:
      TypeError: `encoding` is not an `Encoding`, `bounds` not a pair, `constraints` not
        callable, `noise_handling` of another type.
      ValueError: an unknown bound handler, NaN bounds, a wrong shape or ``lower >= upper``;
        constraints of the wrong shape or non-finite at `x0`.
    """
    if bound_handler not in BOUND_HANDLERS:
        raise ValueError(f"bound_handler must be one of {BOUND_HANDLERS}, got {bound_handler!r}")
    if encoding is not None and not isinstance(encoding, Encoding):
        raise TypeError(f"encoding must be an evojax_cma.Encoding, got {type(encoding).__name__}")
    noise = _noise_options(noise_handling)
    m = 0 if constraints is None else _check_constraints(constraints, num_dims, batched, x0)
    as_tuple = None if bounds is None else _bounds_tuple(bounds, num_dims)
    return Setup(encoding, as_tuple, bound_handler, constraints, m, noise, bool(keyed))


def _bounds_tuple(bounds: Any, num_dims: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise TypeError(f"bounds must be a pair (lower, upper), got {bounds!r}")
    lower, upper = check_bounds(bounds[0], bounds[1], num_dims)
    lower = np.broadcast_to(lower, (num_dims,))
    upper = np.broadcast_to(upper, (num_dims,))
    return (tuple(float(v) for v in lower), tuple(float(v) for v in upper))


def setup_stop_defaults(setup: Setup, options: dict[str, Any]) -> dict[str, Any]:
    """`options` with pycma's defaults for constraints and noise handling filled in.

    ``cma.fmin_con2`` turns ``tolstagnation`` off (the augmented fitness moves), and
    ``cma.fmin2`` with a noise handler turns ``tolfacupx`` off (sigma is increased on
    purpose).
    """
    options = dict(options)
    if setup.constraints is not None:
        options.setdefault("tolstagnation", 0)
    if setup.noise is not None and setup.noise.sigma_exponent > 0:
        options.setdefault("tolfacupx", float("inf"))
    return options


def _noise_options(noise_handling: Any) -> NoiseOptions | None:
    if noise_handling is None or noise_handling is False:
        return None
    if noise_handling is True:
        return noise_lib.noise_handler()
    if isinstance(noise_handling, NoiseOptions):
        return noise_handling
    raise TypeError(
        "noise_handling must be a bool or evojax_cma.noise_handler(...), "
        f"got {type(noise_handling).__name__}"
    )


def _check_constraints(constraints: Any, num_dims: int, batched: bool, x0: Any) -> int:
    """The number of constraints m, after checking g's output shape (and values at x0)."""
    if not callable(constraints):
        raise TypeError(f"constraints must be callable, got {type(constraints).__name__}")
    shape = (1, num_dims) if batched else (num_dims,)
    point = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
    out = jax.eval_shape(constraints, point)
    out_shape = getattr(out, "shape", None)
    want = "(popsize, m)" if batched else "(m,)"
    if out_shape is None or len(out_shape) != len(shape) or out_shape[:-1] != shape[:-1]:
        raise ValueError(
            f"constraints must return shape {want} for input of shape {shape}, got {out_shape}"
        )
    if out_shape[-1] < 1:
        raise ValueError("constraints must return at least one value (m >= 1)")
    if x0 is not None and is_concrete(x0):
        x = jnp.reshape(jnp.asarray(x0, jnp.result_type(float)), shape)
        values = np.asarray(constraints(x))
        if not np.all(np.isfinite(values)):
            raise ValueError(f"constraints returned non-finite values at x0: {values}")
    return int(out_shape[-1])


def _box(setup: Setup) -> Encoding | None:
    if setup.bounds is None:
        return None
    lower, upper = setup.bounds
    return clip_encoding(lower, upper) if setup.penalized else bound_transform(lower, upper)


def phenotypes(setup: Setup, genotypes: Array) -> tuple[Array, Array]:
    """``(unrepaired, evaluated)`` phenotypes of ``(..., n)`` genotypes.

    ``evaluated`` lies in the bounds; ``unrepaired`` is the phenotype before the bound
    handler (what the penalty compares against).
    """
    pre = genotypes if setup.encoding is None else setup.encoding.decode(genotypes)
    box = _box(setup)
    return pre, (pre if box is None else box.decode(pre))


def initial_genotype(setup: Setup, x0: Any) -> Array:
    """The genotype of a phenotype `x0` (moved into the box with a warning if outside)."""
    if setup.bounds is not None and is_concrete(x0):
        warn_if_outside(x0, *setup.bounds)
    full = chain(setup.encoding, _box(setup))
    if setup.bounds is not None and setup.penalized:
        lower, upper = setup.bounds
        x0 = jnp.clip(jnp.asarray(x0, float), jnp.asarray(lower), jnp.asarray(upper))
    return full.encode(jnp.asarray(x0)).astype(jnp.result_type(jnp.asarray(x0), float))


class Aux(NamedTuple):
    """Per-run state of the evaluation step; ``()`` for a part not in use."""

    penalty: Any  # PenaltyState of the adaptive bound penalty
    al: Any  # ALState of the augmented Lagrangian
    noise: Any  # NoiseState of the noise handling


def init_aux(setup: Setup, num_dims: int, popsize: int, dtype: Any) -> Aux:
    """The `Aux` a run starts with."""
    return Aux(
        penalty=init_penalty(num_dims, popsize, dtype) if setup.penalized else (),
        al=al_lib.init_al(setup.num_constraints, num_dims, dtype) if setup.constraints else (),
        noise=noise_lib.init_noise(setup.noise, dtype) if setup.noise else (),
    )


def _variances(state: Any) -> Array:
    C = state.C
    diag = jnp.diagonal(C) if C.ndim == 2 else C
    return state.sigma**2 * diag


def told_fitness(
    setup: Setup,
    penalty: Any,
    state: Any,
    genotypes: Array,
    unrepaired: Array,
    evaluated: Array,
    fitness: Array,
    popsize: Any,
) -> tuple[Array, Any]:
    """The fitness to tell the strategy, and the new penalty state.

    Without the penalty this is `fitness` itself. With it, `state` must be a CMA-family
    state (``mean``, ``sigma``, ``C``, ``params.weights``, ``generation``): the state the
    points were sampled from.
    """
    if not setup.penalized:
        return fitness, penalty
    mean_pre, mean_in = phenotypes(setup, state.mean)
    full_encode = chain(setup.encoding, _box(setup)).encode
    mean_offset = jnp.where(mean_pre == mean_in, 0.0, state.mean - full_encode(mean_in))
    told, new_penalty = bound_penalty_fitness(
        penalty,
        unrepaired,
        evaluated,
        fitness,
        mean_offset=mean_offset,
        variances=_variances(state),
        weights=state.params.weights,
        generation=state.generation,
        popsize=popsize,
    )
    return told, new_penalty


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


def repeated_fitness(
    setup: Setup, fn: Any, batched: bool, points: Array, key: Array, repeats: Any
) -> Array:
    """Median of `repeats` (traced, at most ``setup.max_evaluations``) evaluations."""
    keyed = setup.keyed
    if setup.max_evaluations == 1:
        return population_fitness(fn, batched, points, key if keyed else None)

    def one(k, values):
        sub = jax.random.fold_in(key, k) if keyed else None
        return values.at[k].set(population_fitness(fn, batched, points, sub))

    values = jnp.full((setup.max_evaluations, points.shape[0]), jnp.nan, points.dtype)
    values = jax.lax.fori_loop(0, repeats, one, values)
    return jnp.nanmedian(values, axis=0)


def evaluations_per_value(aux: Aux) -> Any:
    """Evaluations aggregated into one f-value now (1 without noise handling)."""
    if isinstance(aux.noise, noise_lib.NoiseState):
        return jnp.floor(aux.noise.evaluations).astype(jnp.int32)
    return 1


def constraint_values(setup: Setup, batched: bool, points: Array) -> Array:
    """``(rows, m)`` constraint values of the points."""
    assert setup.constraints is not None
    return population_fitness(setup.constraints, batched, points)


def feasible(G: Array | None) -> Any:
    """Rows with every ``g <= 0`` (all rows without constraints)."""
    return True if G is None else jnp.all(G <= 0, axis=-1)


def augmented(aux: Aux, F: Array, G: Array | None, popsize: Any) -> tuple[Array, Aux]:
    """The objective plus the augmented-Lagrangian penalties (`F` without constraints)."""
    if G is None:
        return F, aux
    h, al = al_lib.al_fitness(aux.al, F, G, popsize)
    return h, aux._replace(al=al)


def adapt_lagrangian(
    aux: Aux, F: Array, G: Array | None, h: Array, popsize: Any, num_dims: int
) -> Aux:
    """After ``tell``: adapt the Lagrangian coefficients (no-op without constraints)."""
    if G is None:
        return aux
    return aux._replace(al=al_lib.al_generation(aux.al, F, G, h, popsize, num_dims))


def reeval_points(
    setup: Setup, key: Array, state: Any, population: Array, h: Array, popsize: Any
) -> tuple[Array, Array, Array]:
    """The candidates the noise handler evaluates again: ``(index, valid, genotypes)``.

    Each moves by ``epsilon sigma sqrt(diag C) z`` (pycma moves it by ``epsilon`` times a
    full sample step of the updated distribution; epsilon is 1e-7 either way).
    """
    assert setup.noise is not None
    k_index, k_move = jax.random.split(key)
    index, valid = noise_lib.reeval_indices(k_index, h, popsize, setup.noise)
    z = jax.random.normal(k_move, (index.shape[0], population.shape[1]), population.dtype)
    step = jnp.sqrt(_variances(state))[None, :] * z
    return index, valid, population[index] + setup.noise.epsilon * step


def treat_noise(
    setup: Setup,
    aux: Aux,
    state: Any,
    h: Array,
    h_again: Array,
    index: Array,
    valid: Array,
    popsize: Any,
    repeats: Any,
) -> tuple[Any, Aux]:
    """Measure the noise from the re-evaluations, scale sigma, count the evaluations."""
    assert setup.noise is not None
    s = noise_lib.measure(h, h_again, index, valid, popsize)
    noise, factor = noise_lib.treat(aux.noise, s, state.mean.shape[-1], setup.noise)
    extra = (repeats - 1) * popsize + repeats * jnp.sum(valid)
    state = state._replace(
        sigma=state.sigma * factor, evals=state.evals + jnp.asarray(extra, state.evals.dtype)
    )
    return state, aux._replace(noise=noise)


def generation(
    strategy: Any,
    fn: Any,
    batched: bool,
    setup: Setup,
    key: Array,
    state: Any,
    aux: Aux,
    best: tuple[Array, Array],
    active: Any = True,
) -> tuple[Any, Aux, tuple[Array, Array]]:
    """One generation in JAX: ask, evaluate, tell, then adapt the `Aux` parts.

    ``best`` is ``(x, f)`` of the best feasible evaluated point (phenotype, raw f).
    """
    population, state = strategy.ask(key, state, active=active)
    lam = active_popsize(strategy, state)
    unrepaired, points = phenotypes(setup, population)
    repeats = evaluations_per_value(aux)
    F = repeated_fitness(setup, fn, batched, points, jax.random.fold_in(key, 1), repeats)
    G = None if setup.constraints is None else constraint_values(setup, batched, points)
    h, aux = augmented(aux, F, G, lam)
    told, penalty = told_fitness(setup, aux.penalty, state, population, unrepaired, points, h, lam)
    best = best_of(best, points, jnp.where(feasible(G), F, jnp.nan), lam)
    state = strategy.tell(state, population, told)
    aux = adapt_lagrangian(aux._replace(penalty=penalty), F, G, h, lam, strategy.num_dims)
    if setup.noise is not None:
        index, valid, again = reeval_points(
            setup, jax.random.fold_in(key, 2), state, population, h, lam
        )
        moved = phenotypes(setup, again)[1]
        F2 = repeated_fitness(setup, fn, batched, moved, jax.random.fold_in(key, 3), repeats)
        if G is not None:
            G2 = constraint_values(setup, batched, moved)
            F2 = F2 + jnp.sum(al_lib.al_penalties(aux.al, G2), axis=-1)
        state, aux = treat_noise(setup, aux, state, h, F2, index, valid, lam, repeats)
    return state, aux, best


def active_popsize(strategy: Any, state: Any) -> Any:
    """λ of the current generation: ``params.popsize`` where a strategy has one."""
    return getattr(getattr(state, "params", None), "popsize", strategy.popsize)


def best_of(
    best: tuple[Array, Array], points: Array, fitness: Array, popsize: Any
) -> tuple[Array, Array]:
    """Fold a generation's evaluated `points` and raw `fitness` into ``(best_x, best_f)``."""
    ok = (jnp.arange(fitness.shape[0]) < popsize) & jnp.isfinite(fitness)
    f = jnp.where(ok, fitness, jnp.inf)
    i = jnp.argmin(f)
    better = f[i] < best[1]
    return jnp.where(better, points[i], best[0]), jnp.where(better, f[i], best[1])


def check_strategy(setup: Setup, state: Any) -> None:
    """Raise a `ValueError` for a bound penalty or noise handling without ``C``, ``sigma``."""
    cma_family = all(hasattr(state, f) for f in ("C", "sigma", "params"))
    if setup.penalized and not cma_family:
        raise ValueError(
            "bound_handler='penalty' needs a CMA-family strategy (cma_es, sep_cma_es); "
            "use bound_handler='transform'"
        )
    if setup.noise is not None and not cma_family:
        raise ValueError("noise_handling needs a CMA-family strategy (cma_es, sep_cma_es)")


__all__ = [
    "BOUND_HANDLERS",
    "Aux",
    "PenaltyState",
    "Setup",
    "active_popsize",
    "adapt_lagrangian",
    "augmented",
    "best_of",
    "check_strategy",
    "constraint_values",
    "evaluations_per_value",
    "feasible",
    "generation",
    "init_aux",
    "initial_genotype",
    "make_setup",
    "phenotypes",
    "population_fitness",
    "reeval_points",
    "repeated_fitness",
    "told_fitness",
    "treat_noise",
]
