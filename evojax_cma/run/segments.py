"""Running a compiled loop in segments: progress bars, periodic checkpoints, resuming.

A driver's loop is compiled once with the generation to stop at as a traced argument, so
running it to the end in one call, or segment by segment with the host in between, is the
same generation loop on the same carry: the results are bit-identical. Between
segments the host writes checkpoints (`evojax_cma.checkpoint`: write-then-rename, no
pickle); a run resumed from a checkpoint continues exactly. All of this needs concrete
values, so it is for top-level calls; under the user's own ``jit``/``vmap`` a driver runs
in one segment.

A progress bar alone needs no return to the host: `reporting` splits the compiled loop
into segments *inside* the program and sends the few counters of each (generation,
evaluations, best f, σ) to the bar with a host callback (~50 µs on CPU). Returning to
the host instead costs a dispatch of the whole carry per segment (~0.4 ms, 10-15 % of 100
generations of a 10-D CMA-ES; ``benchmarks/progress_overhead.py``). The loop without a
bar is a separate program.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

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


_BAR: list[Any] = [None]
"""The bar of the driver call in progress (`reporting`'s callbacks update it).

One per process: a second call with a bar while one is shown is refused (its callbacks
could not tell the two bars apart)."""
_INTERRUPTED = [False]
"""Set by `_show_packed` when Ctrl-C interrupted a report."""


def _flags_done(c: Counters, xp: Any) -> Any:
    """Whether each run is done (stop flags, on a trailing axis, reduced with any)."""
    done = c.done
    if xp.ndim(done) > xp.ndim(c.generation):
        done = xp.any(done, axis=-1)
    return done


def _display(generation: int, evals: int, best_f: float, sigma: float) -> None:
    """Move the bar of the call in progress to `generation` and show the counters."""
    bar = _BAR[0]
    if bar is None:
        return
    if generation > bar.n:  # callbacks are unordered: never move the bar back
        bar.update(generation - bar.n)
    bar.set_postfix(evals=evals, best_f=f"{best_f:.4g}", sigma=f"{sigma:.3g}", refresh=False)


def _show(c: Counters) -> None:
    """`_display` from host counters (batched: the furthest run, the best f, median σ)."""
    _display(
        int(np.max(c.generation)),
        int(np.max(c.evals)),
        float(np.min(c.best_f)),
        float(np.median(c.sigma)),
    )


def _pack(c: Counters) -> Array:
    """The four numbers `_display` shows, as one int32 vector (floats bit-cast).

    A host callback's cost grows with its number of arguments (~20-40 µs each on CPU):
    one small array is the cheapest way across.
    """
    as_bits = partial(lax.bitcast_convert_type, new_dtype=jnp.int32)
    return jnp.stack(
        [
            jnp.max(c.generation).astype(jnp.int32),
            jnp.max(c.evals).astype(jnp.int32),
            as_bits(jnp.min(c.best_f).astype(jnp.float32)),
            as_bits(jnp.median(c.sigma).astype(jnp.float32)),
        ]
    )


def _show_packed(packed: Any) -> np.ndarray:
    """`_display` from `_pack`'s vector (host side of `reporting`'s callback).

    Returns 0, or 1 after a ``KeyboardInterrupt`` (Ctrl-C lands here, the only Python
    code that runs during the call): the loop then stops at this segment's end and
    `run_in_segments` raises the interrupt, instead of XLA wrapping it in a runtime error.
    """
    try:
        v = np.asarray(packed)
        best_f, sigma = v[2:].view(np.float32)
        _display(int(v[0]), int(v[1]), float(best_f), float(sigma))
    except KeyboardInterrupt:
        _INTERRUPTED[0] = True
        return np.ones((), np.int32)
    return np.zeros((), np.int32)


def reporting(
    loop: Callable[[Any, Any], Any], counters: Callable[[Any], Counters], every: int | None
) -> Callable[[Any, Any], Any]:
    """A traced ``loop(carry, until)`` that shows progress every `every` generations.

    The returned function runs `loop` in segments of `every` generations inside the
    compiled program and reports `counters` of the carry to the progress bar after each
    one (one host callback of four numbers; `run_in_segments` owns the bar). The carry
    it returns is the one `loop` returns run to `until` in one go: a segment boundary
    only re-enters the same generation loop. With ``every=None``, `loop` itself.

    The report is a ``jax.pure_callback`` whose answer (always 0) the loop's condition
    reads, so XLA keeps it and calls it once per segment. ``jax.debug.callback`` would
    do the same, but a program with effects loses JAX's C++ dispatch: every call then
    pays ~3 ms of Python dispatch for a carry of ~55 arrays, 2-3 % of 3000 generations
    of a 10-D CMA-ES (``benchmarks/progress_overhead.py``).
    """
    if every is None:
        return loop
    answer = jax.ShapeDtypeStruct((), jnp.int32)

    def run(carry: Any, until: Any) -> Any:
        def remaining(c_answer: Any) -> Any:
            c, heard = c_answer
            k = counters(c)
            going = ~jnp.all(_flags_done(k, jnp)) & (jnp.max(k.generation) < until)
            return going & (heard == 0)

        def segment(c_answer: Any) -> Any:
            c, _ = c_answer
            c = loop(c, jnp.minimum(until, jnp.max(counters(c).generation) + every))
            return c, jax.pure_callback(_show_packed, answer, _pack(counters(c)))

        return lax.while_loop(remaining, segment, (carry, jnp.zeros((), jnp.int32)))[0]

    return run


def run_in_segments(
    advance: Callable[[Any, int, int | None], Any],
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
    """Run ``advance(carry, until, report)`` to the end, in segments where needed.

    Without `progress`, `checkpoint` and `resume`, one call to the end
    (``until=ALL_GENERATIONS``), which also works under the user's ``jit``/``vmap``. With
    `progress` alone, also one call: the compiled loop reports to the bar every `segment`
    generations (``report=segment``; see `reporting`). With a `checkpoint`, or with
    several processes, one call per segment, since the host works in between.

    Args:
      advance: the driver's compiled loop: runs until a criterion fires or the state's
        generation count reaches ``until``, reporting progress every ``report``
        generations (None: never), and returns the carry.
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
      RuntimeError: `progress` while another call of this process shows a bar.
      KeyboardInterrupt: Ctrl-C during a run with a bar (at the end of the segment).
    """
    if not (progress or checkpoint is not None or resume is not None):
        return advance(carry, ALL_GENERATIONS, None)  # one call: nothing to do in between
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
    if progress and _BAR[0] is not None:
        raise RuntimeError(
            "progress=True: another call in this process is showing a progress bar; run "
            "this one without progress (one bar per process at a time)"
        )
    bar = progress_bar(progress)

    def read(carry: Any) -> tuple[int, Counters]:
        # One transfer of the few scalars the host needs per segment.
        c = jax.device_get(counters(carry))
        c = c._replace(done=_flags_done(c, np))
        return int(np.max(c.generation)), c

    generation, c = read(carry)
    if bar is not None and generation:
        bar.update(generation)  # a resumed run starts where it stopped
    last_saved = generation
    _BAR[0] = bar
    try:
        # With several processes (jax.distributed) the callback would run in process 0
        # alone while every process's loop waits for its answer: segments on the host.
        if checkpoint is None and jax.process_count() == 1:
            # No carry to save: one call that reports as it goes.
            _INTERRUPTED[0] = False
            carry = advance(carry, ALL_GENERATIONS, segment if bar is not None else None)
            jax.block_until_ready(carry)  # every report has reached the bar
            if _INTERRUPTED[0]:
                raise KeyboardInterrupt
        else:  # one call per segment, saving the carry in between
            while not bool(np.all(c.done)):
                carry = advance(carry, generation + segment, None)
                now, c = read(carry)
                if bar is not None:
                    _show(c)
                if checkpoint is not None and now - last_saved >= every:
                    ckpt.save(checkpoint, carry, metadata={**(metadata or {}), "generation": now})
                    last_saved = now
                if now == generation:  # no progress: every run is stopped
                    break
                generation = now
    finally:
        _BAR[0] = None
        if bar is not None:
            bar.close()
    if checkpoint is not None:
        now = read(carry)[0]
        ckpt.save(checkpoint, carry, metadata={**(metadata or {}), "generation": now})
    return carry


__all__ = [
    "ALL_GENERATIONS",
    "Counters",
    "carry_counters",
    "progress_bar",
    "reporting",
    "run_in_segments",
]
