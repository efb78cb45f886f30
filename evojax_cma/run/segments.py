"""Running a compiled loop in segments: progress bars, periodic checkpoints, resuming.

A driver's loop is compiled once with the generation to stop at as a traced argument, so
running it to the end in one call, or segment by segment with the host in between, is the
same compiled program on the same carry: the results are bit-identical. Between
segments the host updates a tqdm bar (generation, evaluations, best f, sigma) and writes
checkpoints (`evojax_cma.checkpoint`: write-then-rename, no pickle); a run resumed from a
checkpoint continues exactly. All of this needs concrete values, so it is for top-level
calls; under the user's own ``jit``/``vmap`` a driver runs in one segment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from evojax_cma import checkpoint as ckpt
from evojax_cma.core.validation import any_traced, check_int


class Counters(NamedTuple):
    """What the host reads from a carry between segments (arrays; batched under ``vmap``)."""

    generation: Any  # generations so far (over all runs of a schedule)
    evals: Any
    best_f: Any
    sigma: Any
    done: Any  # whether each run is finished (or its stop flags, on a trailing axis)


ALL_GENERATIONS = 2**31 - 1
"""The ``until`` of a run in one segment (the largest int32)."""


def carry_counters(carry: Any) -> Counters:
    """`Counters` of a `evojax_cma.minimize` carry (``state``, ``flags``, ``best``)."""
    # The stop flags themselves: reduced on the host after the one transfer (an `any`
    # here would be one more device call per segment).
    return Counters(
        carry.state.generation, carry.state.evals, carry.best.f, carry.state.sigma, carry.flags
    )


def progress_bar(enabled: bool) -> Any:
    """A tqdm bar counting generations, or None when not `enabled`."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError("progress=True needs tqdm: pip install 'evojax_cma[progress]'") from exc
    return tqdm(unit="gen", dynamic_ncols=True)


def run_in_segments(
    advance: Callable[[Any, int], Any],
    carry: Any,
    *,
    segment: int = 100,
    progress: bool = False,
    checkpoint: Any = None,
    checkpoint_every: int | None = None,
    resume: Any = None,
    metadata: dict[str, Any] | None = None,
    after_load: Callable[[Any], Any] | None = None,
    counters: Callable[[Any], Counters] = carry_counters,
) -> Any:
    """Call ``advance(carry, until)`` segment by segment until the run's flags are set.

    Without `progress`, `checkpoint` and `resume`, one call to the end
    (``until=ALL_GENERATIONS``), which also works under the user's ``jit``/``vmap``.

    Args:
      advance: the driver's compiled loop: runs until a criterion fires or the state's
        generation count reaches ``until``, and returns the carry.
      carry: the run's carry (``state``, ``flags``, ``best``, ... fields); also the
        template a `resume` checkpoint is loaded into.
      segment: generations per call (>= 1).
      progress: show a tqdm bar.
      checkpoint: a path to save the carry to (at the end, and every
        `checkpoint_every` generations, rounded up to a segment's end).
      checkpoint_every: generations between checkpoints (default: every segment).
      resume: a checkpoint path to continue from instead of `carry`.
      metadata: kept in the checkpoint beside the carry.
      after_load: applied to a resumed carry (the driver re-evaluates its stop flags
        under the new options, so that a run stopped by ``maxiter`` can be extended).
      counters: reads generation, evaluations, best f, σ and whether it is done from a
        carry (`carry_counters` for `evojax_cma.minimize`'s).

    Raises:
      ValueError: a carry that is traced (inside ``jit``/``vmap``), a bad segment, or a
        checkpoint of another run (see `evojax_cma.checkpoint.load`).
    """
    if not (progress or checkpoint is not None or resume is not None):
        return advance(carry, ALL_GENERATIONS)  # one call: nothing to do in between
    segment = check_int("segment", segment, 1)
    every = (
        segment if checkpoint_every is None else check_int("checkpoint_every", checkpoint_every, 1)
    )
    if any_traced(carry):
        raise ValueError(
            "progress, checkpoint and resume need a top-level call: they are not available "
            "inside jit or vmap (run the batch with jax.vmap and no progress, or loop in Python)"
        )
    if resume is not None:
        expect = {k: v for k, v in (metadata or {}).items() if k != "generation"}
        carry = ckpt.load(resume, like=carry, expect=expect)
        if after_load is not None:
            carry = after_load(carry)
    bar = progress_bar(progress)

    def read(carry: Any) -> tuple[int, Counters]:
        # One transfer of the few scalars the host needs per segment.
        c = jax.device_get(counters(carry))
        if np.ndim(c.done) > np.ndim(c.generation):  # stop flags: any one ends the run
            c = c._replace(done=np.any(c.done, axis=-1))
        return int(np.max(c.generation)), c

    generation, c = read(carry)
    last_saved = generation
    try:
        while not bool(np.all(c.done)):
            carry = advance(carry, generation + segment)
            now, c = read(carry)
            if bar is not None:
                bar.update(now - generation)
                bar.set_postfix(
                    evals=int(np.max(c.evals)),
                    best_f=f"{float(np.min(c.best_f)):.4g}",
                    sigma=f"{float(np.median(c.sigma)):.3g}",
                    refresh=False,
                )
            if checkpoint is not None and now - last_saved >= every:
                ckpt.save(checkpoint, carry, metadata={**(metadata or {}), "generation": now})
                last_saved = now
            if now == generation:  # no progress: every run is stopped
                break
            generation = now
    finally:
        if bar is not None:
            bar.close()
    if checkpoint is not None:
        now = read(carry)[0]
        ckpt.save(checkpoint, carry, metadata={**(metadata or {}), "generation": now})
    return carry


__all__ = ["ALL_GENERATIONS", "Counters", "carry_counters", "progress_bar", "run_in_segments"]
