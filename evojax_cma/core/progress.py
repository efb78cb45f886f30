"""Run bookkeeping shared by every strategy: start point, best point, evaluations, generations.

Every strategy state is a `RunState`: the mean, step size and params, and the progress
fields (``generation``, ``evals``, ``best_x``, ``best_f``, ``best_evals``, ``sigma0`` and
the `FitnessHistory` that the termination criteria read) are declared here once and
inherited, as evosax's ``algorithms/base.py`` keeps them; `initial_progress` makes the
progress fields in ``init`` and `next_progress` advances them in ``tell``, so that the
counting has one home.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from jax import Array

from evojax_cma.core.termination import FitnessHistory, init_history, update_history
from evojax_cma.core.validation import check_finite_in, check_sigma0, check_vector, state_dtype

S = TypeVar("S", bound="RunState")


@dataclasses.dataclass(frozen=True, eq=False)
class RunState:
    """What every strategy state holds (a frozen dataclass, a JAX pytree).

    Attributes:
      mean: the distribution's mean (the solution being searched for).
      sigma: its step size, a scalar or one per coordinate.
      params: the strategy's numeric hyperparameters for this run.
      generation: number of completed ``tell`` calls.
      evals: number of evaluations told so far.
      best_x: best point told (among finite fitness values), as the strategy saw it.
      best_f: its fitness as told (``+inf`` before any finite value).
      best_evals: value of ``evals`` when ``best_f`` was found.
      sigma0: initial step size (for ``tolupsigma`` and ``tolfacupx``).
      history: `FitnessHistory` for the termination criteria.

    States keep the NamedTuple conveniences the code and users rely on: ``_replace``,
    ``_asdict`` and ``_fields``.
    """

    mean: Array
    sigma: Array
    params: Any
    generation: Array
    evals: Array
    best_x: Array
    best_f: Array
    best_evals: Array
    sigma0: Array
    history: FitnessHistory

    _fields = ()  # set for each state class by `pytree_state`

    def _replace(self: S, **changes: Any) -> S:
        """A copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)

    def _asdict(self) -> dict[str, Any]:
        """The fields as a dict (shallow)."""
        return {name: getattr(self, name) for name in self._fields}


T = TypeVar("T", bound=type)


def pytree_state(cls: T) -> T:
    """Register a frozen dataclass state as a JAX pytree whose leaves are all its fields."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    cls._fields = names  # type: ignore[attr-defined]
    return jax.tree_util.register_dataclass(cls, data_fields=list(names), meta_fields=[])


def start_point(x0: Any, sigma0: Any = None, num_dims: int | None = None) -> Array:
    """`x0` as the run's mean: its own dtype if floating, else JAX's default float.

    With `num_dims` (and `sigma0`), ``init``'s checks come first: `x0` a real vector
    ``(n,)`` of float32/float64 (or integers) that is finite in the state's dtype, `sigma0`
    a real scalar ``> 0`` whose square is a normal number of that dtype
    (`evojax_cma.core.validation.check_sigma0`); values where concrete.

    Raises:
      TypeError: float16/bfloat16 or complex `x0`, complex `sigma0`.
      ValueError: shapes, non-finite values (``1e39`` in float32 included), σ0 out of range.
    """
    if num_dims is not None:
        check_vector("x0", x0, num_dims)
        dtype = state_dtype(x0)
        check_finite_in("x0", x0, dtype)
        check_sigma0(sigma0, dtype)
    dtype = state_dtype(x0)
    return jnp.asarray(x0).astype(dtype)


def initial_progress(x0: Array, sigma0: Any, num_dims: int, popsize: int) -> dict[str, Any]:
    """The bookkeeping fields every strategy state starts with (``x0`` from `start_point`).

    ``generation``, ``evals``, ``best_x``, ``best_f`` (``+inf``), ``best_evals``, ``sigma0``
    and an empty ``history``.
    """
    i0 = jnp.asarray(0, jnp.int32)
    return dict(
        generation=i0,
        evals=i0,
        best_x=x0,
        best_f=jnp.asarray(jnp.inf, x0.dtype),
        best_evals=i0,
        sigma0=jnp.asarray(sigma0, x0.dtype),
        history=init_history(num_dims, popsize, x0.dtype),
    )


def initial_fields(
    x0: Any, sigma0: Any, params: Any, num_dims: int, popsize: int
) -> dict[str, Any]:
    """The `RunState` fields a run starts with, after ``init``'s checks of x0 and sigma0.

    ``mean`` is `x0` as `start_point` makes it; ``sigma`` and every floating field of
    `params` take its dtype (integer fields, like ``popsize``, keep theirs); the progress
    fields are those of `initial_progress`.
    """
    x0 = start_point(x0, sigma0, num_dims)
    dtype = x0.dtype

    def cast(p: Any) -> Array:
        p = jnp.asarray(p)
        return p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p

    return dict(
        mean=x0,
        sigma=jnp.asarray(sigma0, dtype),
        params=jax.tree.map(cast, params),
        **initial_progress(x0, sigma0, num_dims, popsize),
    )


def next_progress(state: Any, best_x: Any, sorted_f: Array, count: Any = None) -> dict[str, Any]:
    """The bookkeeping fields after a ``tell`` of `sorted_f` whose best point is `best_x`.

    `state` has the fields of `initial_progress`; one generation of `count` evaluations
    (default ``len(sorted_f)``; a traced count when only the first rows are a population,
    see `update_history`) is counted.
    """
    generation = state.generation + 1
    count = sorted_f.shape[0] if count is None else count
    evals = state.evals + count
    bx, bf, be = update_best(
        state.best_x, state.best_f, state.best_evals, best_x, sorted_f[0], evals
    )
    return dict(
        generation=generation,
        evals=evals,
        best_x=bx,
        best_f=bf,
        best_evals=be,
        sigma0=state.sigma0,
        history=update_history(state.history, sorted_f, generation, count),
    )


def update_best(
    best_x: Array, best_f: Array, best_evals: Array, x: Array, f: Array, evals: Array
) -> tuple[Array, Array, Array]:
    """Keep the best point: replace ``(best_x, best_f, best_evals)`` when ``f < best_f``."""
    improved = f < best_f
    return (
        jnp.where(improved, x, best_x),
        jnp.where(improved, f, best_f),
        jnp.where(improved, evals, best_evals),
    )


__all__ = [
    "RunState",
    "initial_fields",
    "initial_progress",
    "next_progress",
    "pytree_state",
    "start_point",
    "update_best",
]
