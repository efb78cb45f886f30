"""Periodic evaluation inside the compiled loop: a test score of the mean every k generations.

Training fitness is noisy (minibatches, a few episodes) and ``best_f`` follows the luckiest
single evaluation. `evojax_cma.minimize(..., evaluate=test_fn, evaluate_every=k)` scores a
candidate (the decoded mean by default, or ``best_x``) with a separate *test* function
after every k-th generation, inside the jitted loop, and keeps the scores in fixed-size
arrays of the loop's carry (`Evaluations`, a ring of the last `CAPACITY`) together with the
best candidate by that score. No host callbacks: it works under ``vmap``, in segments and
across checkpoints (the evaluation key is derived from the carry's key, so a resumed run
scores exactly as an uninterrupted one).

The driver runs generations in an inner ``while_loop`` up to the next multiple of k and
evaluates between inner loops, so under ``vmap`` the test function runs once per k
generations for the batch (a ``lax.cond`` in every generation would become a select and
run it every generation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import prng
from evojax_cma.core.validation import check_int
from evojax_cma.run.arguments import check_objective

CAPACITY = 1000
"""Evaluations kept in the carry (the last ones of a longer run)."""

CANDIDATES = ("mean", "best")
"""What is evaluated: the decoded mean (``state.mean``) or the best evaluated point."""

_KEY_STREAM = 0x7E57  # the evaluation key is fold_in(carry key, this): apart from the steps'


class EvaluationSpec(NamedTuple):
    """Static settings of the periodic evaluation (hashable: a ``jit`` static argument).

    Attributes:
      fn: the test function, called like a per-point objective: ``fn(x[, data][, key])``.
      every: generations between evaluations (k).
      on: ``"mean"`` or ``"best"`` (see `CANDIDATES`).
      maximize: whether a larger score is better.
      keyed: whether `fn` takes a key.
      with_data: whether `fn` takes the run's data.
      negate_in_history: whether the score enters the history's ``f_mean`` negated (a
        run with ``maximize=True`` records its f-values as told, negated).
    """

    fn: Callable[..., Any]
    every: int
    on: str
    maximize: bool
    keyed: bool
    with_data: bool
    negate_in_history: bool = False


class Evaluations(NamedTuple):
    """The periodic evaluations of a run (arrays; batched like the run under ``vmap``).

    Attributes:
      generation: ``(CAPACITY,)`` the generation after which each score was taken (-1:
        not written); a ring buffer, `ordered` puts it in order.
      evals: ``(CAPACITY,)`` the objective's evaluations by then.
      score: ``(CAPACITY,)`` the test score, in the test function's own sign.
      count: how many evaluations were made.
      best_x: the candidate with the best score so far (a phenotype, as `fn` saw it).
      best_score: its score (``inf``, or ``-inf`` when maximising, before the first).
      best_generation: the generation of that score (-1 before the first).
    """

    generation: Array
    evals: Array
    score: Array
    count: Array
    best_x: Array
    best_score: Array
    best_generation: Array


def evaluation_spec(
    fn: Any,
    every: Any,
    on: str,
    maximize: bool | None,
    *,
    keyed: bool,
    data: Any,
    num_dims: int,
    dtype: Any,
    objective_maximized: bool = False,
) -> EvaluationSpec | None:
    """Check `minimize`'s ``evaluate*`` keywords before tracing; None without `fn`.

    `fn` is traced abstractly on one point (with `data` and a key as the objective):
    it must return one real scalar. `maximize` None: as the objective
    (`objective_maximized`).

    Raises:
      TypeError: `fn` not callable, `every` not an int.
      ValueError: ``every < 1``, an unknown `on`, ``evaluate_every`` without ``evaluate``,
        a test function of the wrong output shape.
    """
    if fn is None:
        if every is not None:
            raise ValueError("evaluate_every needs evaluate= (a test function)")
        return None
    if not callable(fn):
        raise TypeError(f"evaluate must be callable, got {type(fn).__name__}")
    every = check_int("evaluate_every", 10 if every is None else every, 1)
    if on not in CANDIDATES:
        raise ValueError(f"evaluate_on must be one of {CANDIDATES}, got {on!r}")
    check_objective(fn, num_dims, 1, False, keyed, dtype, data=data, name="evaluate")
    maximize = objective_maximized if maximize is None else maximize
    if not isinstance(maximize, bool):
        raise TypeError(f"evaluate_maximize must be a bool or None, got {maximize!r}")
    flags = (bool(keyed), data is not None, bool(objective_maximized))
    return EvaluationSpec(fn, every, on, maximize, *flags)


def init_evaluations(spec: EvaluationSpec, x: Array, evals: Array) -> Evaluations:
    """No evaluation yet; `x` (a phenotype) fixes the shape and dtype of ``best_x``."""
    dtype = x.dtype
    worst = -jnp.inf if spec.maximize else jnp.inf
    return Evaluations(
        generation=jnp.full((CAPACITY,), -1, jnp.int32),
        evals=jnp.zeros((CAPACITY,), jnp.asarray(evals).dtype),
        score=jnp.full((CAPACITY,), jnp.nan, dtype),
        count=jnp.asarray(0, jnp.int32),
        best_x=x,
        best_score=jnp.asarray(worst, dtype),
        best_generation=jnp.asarray(-1, jnp.int32),
    )


def due(spec: EvaluationSpec, ev: Evaluations, generation: Array) -> Array:
    """Whether a run at `generation` is due an evaluation it has not had yet."""
    last = ev.generation[(ev.count - 1) % CAPACITY]
    fresh = (ev.count == 0) | (last != generation)
    return (generation > 0) & (generation % spec.every == 0) & fresh


def candidate(spec: EvaluationSpec, decode: Callable[[Array], Array], state: Any, best: Any):
    """The point to evaluate: the decoded mean, or the best evaluated point."""
    return best.x if spec.on == "best" else decode(state.mean)


def score(spec: EvaluationSpec, x: Array, key: Array, data: Any) -> Array:
    """The test function at `x`, as a scalar of ``x.dtype``."""
    args = ((data,) if spec.with_data else ()) + ((key,) if spec.keyed else ())
    return jnp.asarray(spec.fn(x, *args), x.dtype).reshape(())


def evaluate_if_due(
    spec: EvaluationSpec,
    ev: Evaluations,
    x: Array,
    generation: Array,
    evals: Array,
    key: Array,
    data: Any,
) -> tuple[Evaluations, Array, Array]:
    """Score `x` if due; returns ``(evaluations, due, score)``.

    The key is ``fold_in(key, ...)`` of the carry's key, so the score depends on the run's
    carry only. Without ``vmap`` nothing is computed when not due (``lax.cond``).
    """
    now = due(spec, ev, generation)
    k = prng.fold_in(key, _KEY_STREAM)
    s = jax.lax.cond(now, lambda: score(spec, x, k, data), lambda: jnp.asarray(jnp.nan, x.dtype))
    row = ev.count % CAPACITY
    better = (s > ev.best_score) if spec.maximize else (s < ev.best_score)
    better = now & better  # NaN scores are never better
    written = Evaluations(
        generation=ev.generation.at[row].set(generation.astype(jnp.int32)),
        evals=ev.evals.at[row].set(evals.astype(ev.evals.dtype)),
        score=ev.score.at[row].set(s),
        count=ev.count + 1,
        best_x=jnp.where(better, x, ev.best_x),
        best_score=jnp.where(better, s, ev.best_score),
        best_generation=jnp.where(better, generation.astype(jnp.int32), ev.best_generation),
    )
    out = jax.tree.map(lambda new, old: jnp.where(now, new, old), written, ev)
    return out, now, s


def note_in_history(spec: EvaluationSpec, history: Any, generation: Array, now: Array, s: Array):
    """`history` with the score `s` as ``f_mean`` of its record of `generation`, if any.

    Only generations that the history records (``stride``) and that are evaluated
    (``every``) get a value; the others keep NaN.
    """
    last = (history.count - 1) % history.generation.shape[0]
    hit = now & (history.count > 0) & (history.generation[last] == generation)
    value = jnp.asarray(-s if spec.negate_in_history else s, history.f_mean.dtype)
    return history._replace(
        f_mean=jnp.where(hit, history.f_mean.at[last].set(value), history.f_mean)
    )


def ordered(ev: Evaluations) -> dict[str, np.ndarray]:
    """``generation``, ``evals`` and ``score`` in generation order, as NumPy (host side).

    A batched `Evaluations` (from ``vmap``) gives arrays with the batch axes first; runs
    with fewer evaluations are padded at the end (generation -1, score NaN).
    """
    count = np.asarray(ev.count)
    columns = {name: np.asarray(getattr(ev, name)) for name in ("generation", "evals", "score")}
    # oldest first: a full ring starts at count % CAPACITY, a partial one at 0
    start = np.where(count > CAPACITY, count % CAPACITY, 0)[..., None]
    index = (start + np.arange(CAPACITY)) % CAPACITY
    written = np.arange(CAPACITY) < np.minimum(count, CAPACITY)[..., None]
    out = {}
    for name, column in columns.items():
        filler = {"generation": -1, "evals": 0}.get(name, np.nan)
        out[name] = np.where(written, np.take_along_axis(column, index, axis=-1), filler)
    return out


__all__ = [
    "CANDIDATES",
    "CAPACITY",
    "EvaluationSpec",
    "Evaluations",
    "candidate",
    "due",
    "evaluate_if_due",
    "evaluation_spec",
    "init_evaluations",
    "note_in_history",
    "ordered",
    "score",
]
