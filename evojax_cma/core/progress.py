"""Run bookkeeping shared by every strategy: start point, best point, evaluations, generations.

Each strategy state carries the same progress fields (``generation``, ``evals``,
``best_x``, ``best_f``, ``best_evals``, ``sigma0`` and the `FitnessHistory` that the
termination criteria read); `initial_progress` makes them in ``init`` and `next_progress`
advances them in ``tell``, so that the counting has one home, as evosax's
``algorithms/base.py`` keeps it.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import Array

from evojax_cma.core.termination import init_history, update_history


def start_point(x0: Any) -> Array:
    """`x0` as the run's mean: its own dtype if floating, else JAX's default float."""
    x0 = jnp.asarray(x0)
    dtype = x0.dtype if jnp.issubdtype(x0.dtype, jnp.floating) else jnp.result_type(float)
    return x0.astype(dtype)


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


__all__ = ["initial_progress", "next_progress", "start_point", "update_best"]
