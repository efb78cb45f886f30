"""The whole optimisation inside one ``jit``: ``lax.while_loop`` over ask, evaluate, tell.

`minimize` works unchanged under ``jax.vmap`` over keys, ``x0``, ``sigma0``, params and
stop options: each run stops on its own criteria and finished runs stay frozen (a
batched ``while_loop`` keeps iterating while any run is active and keeps the carry of the
finished ones). Finished runs are passed ``running=False`` in ``ask`` so that they never
trigger a batch-wide eigendecomposition. A run whose input is invalid (values only known
inside the user's ``jit``/``vmap``) has its ``invalid_input`` flag set before the loop, so
it never iterates and leaves the other runs of its batch untouched.

The shared keywords (problem, test evaluation, recording) are declared once, in
`evojax_cma.run.keywords`; `minimize` receives them as groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from evojax_cma.core import prng
from evojax_cma.core.termination import StopOptions, only_maxiter
from evojax_cma.core.types import CHUNKED, Strategy
from evojax_cma.core.validation import (
    check_int,
    check_key,
    check_sigma0,
    state_dtype,
)
from evojax_cma.history import history_spec, init_history, metrics
from evojax_cma.history import record as record_history
from evojax_cma.run.arguments import check_x0_vector, initial_genotype, problem_and_pipeline
from evojax_cma.run.evaluation import (
    candidate,
    evaluate_if_due,
    evaluation_spec,
    init_evaluations,
    note_in_history,
)
from evojax_cma.run.keywords import (
    EvaluationKeywords,
    ProblemKeywords,
    RecordingKeywords,
    driver,
)
from evojax_cma.run.segments import carry_counters, reporting, run_in_segments
from evojax_cma.run.step import Best, chunked_fitness, generation, initial_best
from evojax_cma.sharding import replicate, shard_problem


class RunResult(NamedTuple):
    """Outcome of `minimize`.

    Attributes:
      state: the final strategy state (``evals``, ...; its ``mean`` and ``best_x`` are
        genotypes, its ``best_f`` the fitness as told, with any bound penalty).
      stop_flags: one boolean per name in `evojax_cma.STOP_NAMES`; see
        `evojax_cma.stop_reasons`.
      best_x: the best evaluated point, as the objective saw it (phenotype, in bounds;
        with constraints, the best feasible one).
      best_f: the objective's value there (inf if none was feasible; with
        ``maximize=True`` the largest value, in the objective's own sign).
      history: the recorded `evojax_cma.history.History` (with ``history=``), else None.
      evaluation: the periodic test scores and the best candidate by them
        (`evojax_cma.run.evaluation.Evaluations`, with ``evaluate=``), else None.
    """

    state: Any
    stop_flags: Array
    best_x: Array
    best_f: Array
    history: Any = None
    evaluation: Any = None


class Carry(NamedTuple):
    """Everything a run carries from one generation to the next (a pytree).

    A run can stop after any generation and continue from its carry (the drivers' segments,
    progress bars and checkpoints), bit for bit as the uninterrupted run.
    """

    key: Array
    state: Any
    flags: Array
    tstates: Any
    best: Best
    history: Any
    evaluations: Any = None


@dataclasses.dataclass(frozen=True)
class Negated:
    """``-fn(...)``: an objective to maximise, told to the strategies as one to minimise."""

    fn: Callable[..., Any]

    def __call__(self, *args: Any) -> Array:
        """The objective's value, negated."""
        return -jnp.asarray(self.fn(*args))


_STATIC = ("strategy", "pipeline", "problem", "chunked", "record", "tested")


@partial(jax.jit, static_argnames=("strategy", "pipeline", "record", "tested"))
def _start(strategy, pipeline, record, tested, key, x0, sigma0, params, options) -> Carry:
    state = strategy.init(key, x0, sigma0, params)
    tstates = pipeline.init(strategy.num_dims, strategy.popsize, state.mean.dtype)
    flags = strategy.stop(state, options)  # only invalid_input can be set here
    history = None
    if record is not None:
        capacity, stride, coordinates = record
        history = init_history(strategy.num_dims, state.mean.dtype, capacity, stride, coordinates)
    best = initial_best(pipeline, state)
    tests = None if tested is None else init_evaluations(tested, best.x, state.evals)
    return Carry(key, state, flags, tstates, best, history, tests)


@partial(jax.jit, static_argnames="strategy")
def _stop_flags(strategy, state, options):
    return strategy.stop(state, options)


@partial(jax.jit, static_argnames=(*_STATIC, "report"))
def _advance(
    strategy, pipeline, problem, chunked, record, tested, carry, options, until, data, report
) -> Carry:
    """Generations until a criterion fires or the generation count reaches `until`.

    With `report`, the progress bar hears from the loop every `report` generations
    (`evojax_cma.run.segments.reporting`).
    """
    static = (strategy, pipeline, problem, chunked, record, tested)
    loop = partial(_generations, *static, options, data)
    return reporting(loop, carry_counters, report)(carry, until)


def _generations(
    strategy, pipeline, problem, chunked, record, tested, options, data, carry, until
) -> Carry:
    """`_advance`'s loop (traced): generations until a criterion fires or `until`.

    With a periodic evaluation (`tested`), generations run in an inner loop up to the
    next multiple of ``tested.every`` and the candidate is scored between inner loops
    (see `evojax_cma.run.evaluation`).
    """

    def running(c: Carry, bound: Any) -> Array:
        return ~jnp.any(c.flags) & (c.state.generation < bound)

    def generations_until(bound: Any) -> Callable[[Carry], Carry]:
        def body(c: Carry) -> Carry:
            key, k_gen = prng.split(c.key)
            state, tstates, best, F = generation(
                strategy,
                pipeline,
                problem,
                k_gen,
                c.state,
                c.tstates,
                c.best,
                running(c, bound),  # False for the finished runs of a batch
                chunked,
                data,
            )
            history = c.history
            if record is not None:
                history = record_history(history, metrics(strategy, state, F))
            flags = strategy.stop(state, options)
            return Carry(key, state, flags, tstates, best, history, c.evaluations)

        return lambda c: lax.while_loop(lambda d: running(d, bound), body, c)

    if tested is None:
        return generations_until(until)(carry)

    def then_evaluate(c: Carry) -> Carry:
        next_test = (c.state.generation // tested.every + 1) * tested.every
        c = generations_until(jnp.minimum(until, next_test))(c)
        x = candidate(tested, pipeline.decode, c.state, c.best)
        g = c.state.generation
        tests, now, s = evaluate_if_due(tested, c.evaluations, x, g, c.state.evals, c.key, data)
        history = c.history
        if record is not None:
            history = note_in_history(tested, history, g, now, s)
        return c._replace(evaluations=tests, history=history)

    return lax.while_loop(lambda c: running(c, until), then_evaluate, carry)


@driver(problem=ProblemKeywords, evaluation=EvaluationKeywords, recording=RecordingKeywords)
def minimize(
    strategy: Strategy,
    fn: Callable[..., Any],
    key: Array,
    x0: Any,
    sigma0: Any,
    params: Any = None,
    options: StopOptions | dict[str, Any] | None = None,
    *,
    data: Any = None,
    chunked: bool = False,
    maximize: bool = False,
    generations: int | None = None,
    sharding: Any = None,
    problem: ProblemKeywords,
    evaluation: EvaluationKeywords,
    recording: RecordingKeywords,
) -> RunResult:
    """Minimise a JAX function with `strategy` until a termination criterion fires.

    Args:
      strategy: e.g. ``evojax_cma.cma_es(n)``.
      fn: a JAX-traceable objective. It maps one point ``(n,)`` to a scalar, or, with
        ``batched=True``, a population ``(popsize, n)`` to ``(popsize,)``. With `data`
        it takes the data as second argument, ``fn(x, data)``; with ``keyed=True`` a PRNG
        key last, ``fn(x, key)`` or ``fn(x, data, key)`` (a noisy objective: minibatches,
        episodes).
      key: a PRNG key (``jax.random.key(seed)``); the same key and inputs give the same
        run, bit for bit, jitted or not (see "Batches" below for ``vmap``).
      x0: initial mean, shape ``(n,)``, as the objective sees points (phenotype); it is
        encoded into the search space (and moved into `bounds`, with a warning).
      sigma0: initial step size, > 0, with σ0² a normal number of the state's dtype
        (float32: ``[1.1e-19, 1.8e19]``).
      params: hyperparameters (defaults: ``strategy.default_params()``), checked by
        ``strategy.check_params`` before tracing (ranges such as ``0 < c_sigma < 1``).
      options: termination thresholds, as `StopOptions` (vmappable) or a dict of pycma
        names (``ftarget``, ``maxfevals``, ``tolfun``, ...).
      data: a pytree of arrays passed to `fn` (and `evaluate`) as a traced argument:
        new data of the same shapes and dtypes reuses the compiled loop, and ``vmap``
        over `data` sweeps datasets or environment parameters in one call.
      chunked: evaluate and tell chunk by chunk, never forming the population
        (`chunked_fitness` and ``strategy.tell_keyed``; for `evojax_cma.open_es` and
        `evojax_cma.variational`). Same result as unchunked, to rounding; a per-point
        keyed objective gets the same keys in both modes (a batched one gets one key per
        chunk, the generation's key with `common_keys`).
      maximize: maximise `fn` (the strategy is told ``-fn``; ``best_f`` is reported in
        the objective's own sign, the state's fitness values in the minimised one).
      generations: run exactly this many generations: every other criterion is off
        (`options` may not be given then). The obvious switch for training runs.
      sharding: `evojax_cma.population_sharding(...)`: sample and evaluate each
        generation's rows on the devices of its mesh (all processes' under
        ``jax.distributed``); only fitness values and n-vector/rank-μ sums cross devices.
        The population (with ``chunked``, the chunk) must divide by the device count.
      problem: the problem keywords (`ProblemKeywords`, listed at the end), passed as
        plain keywords (``bounds=(-5, 5)``, ``keyed=True``). With ``constraints`` the
        final ``state.mean`` is the solution to use (pycma's ``xfavorite``) and
        ``best_x`` the best feasible point evaluated; a batched ``fn`` with ``chunked``
        evaluates a whole chunk.
      evaluation: the test evaluation's keywords (`EvaluationKeywords`): scores,
        generations and evaluations are recorded in ``RunResult.evaluation``
        (`evojax_cma.run.evaluation.Evaluations`: the last 1000; ``best_x`` and
        ``best_score`` the best candidate by score; not counted in ``evals``) and, with
        ``history``, in its ``f_mean`` column (negated with `maximize`).
      recording: history, progress bar and checkpoints (`RecordingKeywords`): a
        checkpoint holds the run's carry (state, transformation states, key, best,
        history), saved with `evojax_cma.checkpoint`; ``checkpoint_every`` is rounded up
        to a segment's end.

    Returns:
      `RunResult` with the final state and the flags of the criteria that fired.

    Raises:
      TypeError: a key that is not a PRNG key, complex or float16 input, options or
        params of the wrong type, a complex objective.
      ValueError: shapes, values out of range (x0 not finite in the state's dtype, σ0,
        params, options, bounds too narrow for the dtype), an objective whose output is
        not one value per point. All before anything is traced; values only known under
        the user's own ``jit``/``vmap`` stop that run at once with ``invalid_input``.

    Batches: under ``jax.vmap`` each run stops on its own. What is equal: the same
    inputs in the same batch layout (batch size and position) give bit-equal results,
    run after run; a run in a batch and the same run alone compute the same updates to
    rounding (batched kernels round differently, ~1e-16 relative per step in float64),
    so their states agree to rounding after a generation, but over many generations a
    rounding difference can flip a ranking and the trajectories may then diverge.

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.cma_es(5)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(5), 1.0,
      ...                   options={"ftarget": 1e-8})
      >>> bool(res.state.best_f <= 1e-8), ec.stop_reasons(res.stop_flags)
      (True, ['ftarget'])
    """
    check_key(key)
    if maximize:
        fn = Negated(fn) if callable(fn) else fn
    check_x0_vector(x0, strategy.num_dims, "minimize")
    dtype = state_dtype(x0)
    check_sigma0(sigma0, dtype)
    rows = strategy.chunk_size if chunked and strategy.chunk_size else strategy.popsize
    objective, pipeline = problem_and_pipeline(strategy, fn, x0, problem, rows=rows, data=data)
    tested = evaluation_spec(
        evaluation.evaluate,
        evaluation.evaluate_every,
        evaluation.evaluate_on,
        evaluation.evaluate_maximize,
        keyed=problem.keyed,
        data=data,
        num_dims=strategy.num_dims,
        dtype=dtype,
        objective_maximized=maximize,
    )
    if generations is not None:
        if options is not None:
            raise ValueError("pass either generations= or options=, not both")
        options = only_maxiter(check_int("generations", generations, 1))
    if options is None or isinstance(options, dict):
        options = strategy.stop_options(**pipeline.stop_defaults(options or {}))
    elif not isinstance(options, StopOptions):
        raise TypeError(f"options must be a StopOptions or a dict, got {type(options).__name__}")
    if params is None:
        params = strategy.default_params()
    elif strategy.check_params is not None:
        strategy.check_params(params)
    if chunked:
        if CHUNKED not in strategy.capabilities:
            raise ValueError(
                f"chunked=True needs a strategy with chunks; {strategy.name!r} has none"
            )
        if pipeline.stateful or problem.constraints is not None:
            raise ValueError(
                "chunked=True works without bound_handler='penalty', constraints and noise_handling"
            )
    x0 = initial_genotype(pipeline, x0)
    record = history_spec(recording.history)
    objective = shard_problem(objective, sharding, rows)
    key, x0, sigma0, params, options = replicate(sharding, (key, x0, sigma0, params, options))
    carry = _start(strategy, pipeline, record, tested, key, x0, sigma0, params, options)
    static = (strategy, pipeline, objective, bool(chunked), record, tested)
    # One call to the end unless a bar, a checkpoint or a resume asks for segments.
    carry = run_in_segments(
        lambda c, until, report: _advance(*static, c, options, until, data, report),
        carry,
        **recording.segments(),
        metadata={"strategy": strategy.name, "num_dims": strategy.num_dims},
        after_load=lambda c: c._replace(flags=_stop_flags(strategy, c.state, options)),
    )
    best_f = -carry.best.f if maximize else carry.best.f
    return RunResult(
        carry.state, carry.flags, carry.best.x, best_f, carry.history, carry.evaluations
    )


__all__ = ["Carry", "Negated", "RunResult", "chunked_fitness", "minimize"]
