"""What stands between sampled points and the objective: encodings, bounds, penalties.

One home for the evaluation step that every driver shares (`evojax_cma.minimize`,
`evojax_cma.minimize_restarts`, `evojax_cma.fmin`):

1. ``phenotypes(setup, X)``: decode the sampled genotypes (user encoding, then the bound
   handler: pycma's ``BoundTransform`` map or ``BoundPenalty``'s projection), giving the
   points the objective sees, always inside the bounds;
2. the driver evaluates the objective there (in JAX or on the host);
3. ``told_fitness(...)``: the fitness the strategy is told (with the adaptive bound
   penalty where chosen), and the new penalty state.

The strategy itself only ever sees genotypes, as evaluated (``tell`` takes them as they
were sampled).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core.encoding import (
    Encoding,
    bound_transform,
    chain,
    check_bounds,
    clip_encoding,
    warn_if_outside,
)
from evojax_cma.core.penalty import PenaltyState, bound_penalty_fitness, init_penalty
from evojax_cma.core.validation import is_concrete

BOUND_HANDLERS = ("transform", "penalty")
"""pycma's ``BoundaryHandler`` choices: ``BoundTransform`` (default) and ``BoundPenalty``."""


class Setup(NamedTuple):
    """Static description of the evaluation step (hashable: a jit static argument)."""

    encoding: Encoding | None  # genotype -> phenotype before the bound handler
    bounds: tuple[tuple[float, ...], tuple[float, ...]] | None
    bound_handler: str

    @property
    def penalized(self) -> bool:
        """Whether the adaptive bound penalty is in use."""
        return self.bounds is not None and self.bound_handler == "penalty"


def make_setup(
    num_dims: int,
    bounds: Any = None,
    bound_handler: str = "transform",
    encoding: Encoding | None = None,
) -> Setup:
    """Validate the user's bounds and encoding before anything is traced.

    Args:
      num_dims: n.
      bounds: None or ``(lower, upper)``, each a scalar or ``(n,)`` (±inf allowed).
      bound_handler: ``"transform"`` or ``"penalty"``.
      encoding: an `evojax_cma.Encoding` applied before the bounds, or None.

    Raises:
      TypeError: `encoding` is not an `Encoding`, `bounds` not a pair.
      ValueError: an unknown bound handler, NaN bounds, a wrong shape or ``lower >= upper``.
    """
    if bound_handler not in BOUND_HANDLERS:
        raise ValueError(f"bound_handler must be one of {BOUND_HANDLERS}, got {bound_handler!r}")
    if encoding is not None and not isinstance(encoding, Encoding):
        raise TypeError(f"encoding must be an evojax_cma.Encoding, got {type(encoding).__name__}")
    if bounds is None:
        return Setup(encoding, None, bound_handler)
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise TypeError(f"bounds must be a pair (lower, upper), got {bounds!r}")
    lower, upper = check_bounds(bounds[0], bounds[1], num_dims)
    lower = np.broadcast_to(lower, (num_dims,))
    upper = np.broadcast_to(upper, (num_dims,))
    as_tuple = (tuple(float(v) for v in lower), tuple(float(v) for v in upper))
    return Setup(encoding, as_tuple, bound_handler)


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


def init_penalty_state(setup: Setup, num_dims: int, popsize: int, dtype: Any) -> Any:
    """The penalty state a run starts with (an empty tuple without a penalty)."""
    return init_penalty(num_dims, popsize, dtype) if setup.penalized else ()


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


def population_fitness(fn: Any, batched: bool, points: Array) -> Array:
    """``fn(points)`` if `batched`, else ``fn`` vmapped over the ``(rows, n)`` points."""
    return fn(points) if batched else jax.vmap(fn)(points)


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


def check_penalty_strategy(setup: Setup, state: Any) -> None:
    """Raise a `ValueError` when the bound penalty is asked of a strategy without C."""
    if setup.penalized and not all(hasattr(state, f) for f in ("C", "sigma", "params")):
        raise ValueError(
            "bound_handler='penalty' needs a CMA-family strategy (cma_es, sep_cma_es); "
            "use bound_handler='transform'"
        )


__all__ = [
    "BOUND_HANDLERS",
    "active_popsize",
    "best_of",
    "PenaltyState",
    "Setup",
    "check_penalty_strategy",
    "init_penalty_state",
    "initial_genotype",
    "make_setup",
    "phenotypes",
    "population_fitness",
    "told_fitness",
]
