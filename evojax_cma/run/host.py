"""A host-side driver in the spirit of ``cma.fmin2``, for NumPy objectives.

The strategy's ``ask`` and ``tell`` run jit-compiled; the objective runs on the host, one
point at a time, a whole population at once (``vectorized=True``), or through any
``concurrent.futures.Executor`` (a process pool, a Dask or Ray client).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from evojax_cma.core import constraints as al_lib
from evojax_cma.core.encoding import Encoding
from evojax_cma.core.noise import NoiseOptions
from evojax_cma.core.termination import STOP_NAMES, stop_reasons
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import check_options, check_positive_scalar, check_vector
from evojax_cma.run.problem import (
    Setup,
    adapt_lagrangian,
    augmented,
    check_strategy,
    evaluations_per_value,
    init_aux,
    initial_genotype,
    make_setup,
    phenotypes,
    reeval_points,
    setup_stop_defaults,
    told_fitness,
    treat_noise,
)
from evojax_cma.run.restarts import (
    ENDS_ALL,
    first_run,
    plan_next_run,
    restart_config,
    run_stop_options,
)
from evojax_cma.strategies.cma_es import cma_es

FMIN_OPTIONS = frozenset(
    {"popsize", "seed", "verbose", "verb_disp", "preset", "CMA_active", "bounds", "BoundaryHandler"}
)


class FminResult(NamedTuple):
    """Outcome of `fmin`.

    Attributes:
      xbest: best point evaluated (NumPy).
      fbest: its fitness.
      evals: number of evaluations.
      iterations: number of generations.
      stop: names of the termination criteria that fired.
      state: the final strategy state.
      history: one row per generation of all runs: ``(iteration, evals, best f of the
        generation, sigma, axis ratio)``.
      runs: number of runs (1 + restarts).
    """

    xbest: np.ndarray
    fbest: float
    evals: int
    iterations: int
    stop: list[str]
    state: Any
    history: np.ndarray
    runs: int = 1


def _evaluate(
    fn, X: np.ndarray, *, vectorized: bool, executor: Executor | None, repeats: int = 1
) -> np.ndarray:
    """One value per row of `X`: the median of `repeats` evaluations (NaN ignored)."""
    runs = []
    for _ in range(repeats):
        if vectorized:
            values = fn(X)
        elif executor is not None:
            values = list(executor.map(fn, list(X)))
        else:
            values = [fn(x) for x in X]
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (X.shape[0],):
            raise ValueError(
                f"the objective must return one scalar per point, got shape {values.shape} "
                f"for {X.shape[0]} points"
            )
        runs.append(values)
    if repeats == 1:
        return runs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmedian(np.stack(runs), axis=0)


def _constraint_values(constraints, X: np.ndarray, m: int) -> np.ndarray:
    """``(rows, m)`` host constraint values; a wrong shape is a `ValueError`."""
    G = np.asarray([np.asarray(constraints(x), dtype=np.float64) for x in X])
    if G.shape != (X.shape[0], m):
        raise ValueError(
            f"constraints must return {m} values per point, got shape {G.shape[1:]} "
            f"(for {X.shape[0]} points)"
        )
    return G


def _host_constraints(constraints: Any, x0: np.ndarray) -> int:
    """The number of host constraints, checked at `x0` (shape and finiteness)."""
    if not callable(constraints):
        raise TypeError(f"constraints must be callable, got {type(constraints).__name__}")
    g0 = np.asarray(constraints(x0), dtype=np.float64)
    if g0.ndim != 1 or g0.size < 1:
        raise ValueError(f"constraints must return a vector (m,) with m >= 1, got {g0.shape}")
    if not np.all(np.isfinite(g0)):
        raise ValueError(f"constraints returned non-finite values at x0: {g0}")
    return int(g0.size)


def fmin(
    fn: Callable[[np.ndarray], Any],
    x0: Any,
    sigma0: float,
    options: dict[str, Any] | None = None,
    *,
    restarts: int = 0,
    bipop: bool | float = False,
    incpopsize: float = 2,
    vectorized: bool = False,
    executor: Executor | None = None,
    strategy: Strategy | None = None,
    params: Any = None,
    encoding: Encoding | None = None,
    constraints: Callable[[np.ndarray], Any] | None = None,
    noise_handler: bool | NoiseOptions | None = None,
) -> tuple[np.ndarray, FminResult]:
    """Minimise a host (NumPy) function with CMA-ES, like ``cma.fmin2(fn, x0, sigma0)``.

    Args:
      fn: objective; takes a point ``(n,)`` and returns a scalar, or with
        ``vectorized=True`` takes ``(popsize, n)`` and returns ``(popsize,)``.
      x0: initial mean, or a function without arguments returning one (called for every
        run, as pycma does; recommended with restarts).
      sigma0: initial step size.
      options: pycma-style options: ``popsize``, ``seed`` (default 0), ``verbose``
        (default 1; 0 is silent), ``verb_disp`` (print every that many iterations,
        default 100), ``preset``, ``CMA_active``, ``bounds`` (``[lower, upper]``),
        ``BoundaryHandler`` (``"transform"``, the default, or ``"penalty"``; see
        `evojax_cma.minimize`), and the termination criteria (``ftarget``, ``maxfevals``,
        ``maxiter``, ``tolfun``, ...; see `STOP_NAMES`).
      restarts: number of IPOP/BIPOP restarts, pycma's schedule
        (`evojax_cma.run.restarts`); ``ftarget`` and ``maxfevals`` (over all runs) end
        everything.
      bipop: BIPOP instead of IPOP (True, or the small/large budget ratio).
      incpopsize: factor of λ between large runs.
      vectorized: whether `fn` evaluates a whole population at once.
      executor: evaluate points through ``executor.map`` (ignored if vectorized).
      strategy: a strategy to use instead of ``cma_es`` built from `options` (no
        restarts).
      params: hyperparameters for the strategy (no restarts).
      encoding: an `evojax_cma.Encoding` from the search space to `fn`'s parameters;
        `x0` and the returned ``xbest`` are in `fn`'s parameters.
      constraints: ``g(x) <= 0`` as in ``cma.fmin_con2``: a host function of a point
        returning ``m`` values, handled by pycma's adaptive augmented Lagrangian
        (`evojax_cma.core.constraints`). ``xbest`` is then the final mean (pycma's
        ``xfavorite``) and ``fbest`` the best feasible f evaluated (inf if none);
        ``tolstagnation`` defaults to 0.
      noise_handler: True or `evojax_cma.noise_handler` settings, as ``cma.fmin2``'s
        ``noise_handler`` (UH-CMA-ES, `evojax_cma.core.noise`); ``tolfacupx`` defaults
        to inf.

    Returns:
      ``(xbest, result)`` as ``cma.fmin2`` returns ``(xbest, es)``.

    Points are passed to `fn` in the strategy's dtype: float64 when
    ``jax_enable_x64`` is on, else float32.
    """
    options = dict(options or {})
    check_options("fmin option(s)", options, FMIN_OPTIONS | set(STOP_NAMES))
    draw_x0 = x0 if callable(x0) else (lambda: x0)
    n = _check_x0(draw_x0())
    check_positive_scalar("sigma0", sigma0)
    if restarts and (strategy is not None or params is not None):
        raise ValueError("restarts build their own CMA-ES: pass neither strategy nor params")
    config = restart_config(n, options.get("popsize"), restarts, incpopsize, bipop)
    stop_opts = {k: options[k] for k in STOP_NAMES if k in options}
    verbose = int(options.get("verbose", 1))
    verb_disp = int(options.get("verb_disp", 100))
    key = jax.random.key(int(options.get("seed", 0)))
    x_first = np.asarray(draw_x0(), dtype=np.float64)
    setup = make_setup(
        n,
        options.get("bounds"),
        options.get("BoundaryHandler", "transform"),
        encoding,
        noise_handling=noise_handler,
    )
    if constraints is not None:
        m = _host_constraints(constraints, x_first)
        setup = setup._replace(constraints=partial(_constraint_values, constraints, m=m))
        setup = setup._replace(num_constraints=m)
    stop_opts = setup_stop_defaults(setup, stop_opts)
    evaluate = partial(_evaluate, fn, vectorized=vectorized, executor=executor)

    schedule, factor, maxiter_cap = first_run(config), 1.0, np.inf
    best: tuple[Any, float] = (None, np.inf)
    history: list[tuple] = []
    while True:
        lam = int(schedule.popsize)
        run_strategy = strategy or cma_es(
            n, lam, preset=options.get("preset", "pycma"), active=options.get("CMA_active", True)
        )
        run_opts = run_stop_options(
            n, schedule.popsize, stop_opts, schedule.evals_before, jnp.asarray(maxiter_cap)
        )
        key, k_run, k_plan = jax.random.split(key, 3)
        start = np.asarray(draw_x0() if x_first is None else x_first, dtype=np.float64)
        x_first = None
        _check_x0(start, n)
        state, flags, best = _one_run(
            run_strategy,
            evaluate,
            setup,
            k_run,
            np.asarray(initial_genotype(setup, start)),
            sigma0 * float(factor),
            params,
            run_opts,
            history,
            best,
            int(schedule.evals_before),
            verbose,
            verb_disp,
        )
        reasons = stop_reasons(flags)
        if any(r in ENDS_ALL for r in reasons):
            break
        next_schedule, factor, maxiter_cap, exhausted = plan_next_run(
            config, schedule, state.evals, k_plan
        )
        if bool(exhausted):
            break
        schedule = next_schedule
        if verbose > 0:
            print(f"restart {int(schedule.runs) - 1} with popsize {int(schedule.popsize)}")
    evals = int(schedule.evals_before) + int(state.evals)
    if verbose > 0:
        print(f"termination on {reasons} after {evals} evaluations")
        print(f"best f = {best[1]:.10e}")
    if setup.constraints is not None:
        xbest = np.asarray(phenotypes(setup, state.mean)[1], dtype=np.float64)
    else:
        xbest = best[0] if best[0] is not None else start
    result = FminResult(
        xbest=xbest,
        fbest=best[1],
        evals=evals,
        iterations=len(history),
        stop=reasons,
        state=state,
        history=np.asarray(history),
        runs=int(schedule.runs),
    )
    return xbest, result


def _check_x0(x0: Any, n: int | None = None) -> int:
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a vector, got shape {x0.shape}")
    check_vector("x0", x0, x0.shape[0] if n is None else n)
    return x0.shape[0]


def _one_run(
    strategy: Strategy,
    evaluate: Callable[..., np.ndarray],
    setup: Setup,
    key: Any,
    x0: np.ndarray,
    sigma0: float,
    params: Any,
    stop_options: Any,
    history: list[tuple],
    best: tuple[Any, float],
    evals_before: int,
    verbose: int,
    verb_disp: int,
) -> tuple[Any, Any, tuple[Any, float]]:
    """One run to its termination; appends to `history`; returns ``(state, flags, best)``.

    The same steps as `evojax_cma.run.problem.generation`, with the evaluations on the
    host between jitted pieces.
    """
    dtype = jnp.result_type(float)
    state = strategy.init(key, jnp.asarray(x0, dtype), sigma0, params)
    check_strategy(setup, state)
    aux = init_aux(setup, strategy.num_dims, strategy.popsize, dtype)
    lam = strategy.popsize

    @jax.jit
    def ask(key, state):
        population, state = strategy.ask(key, state)
        return population, state, *phenotypes(setup, population)

    @jax.jit
    def tell(state, aux, population, unrepaired, points, F, G):
        h, aux = augmented(aux, F, G, lam)
        told, penalty = told_fitness(
            setup, aux.penalty, state, population, unrepaired, points, h, lam
        )
        state = strategy.tell(state, population, told)
        aux = adapt_lagrangian(aux._replace(penalty=penalty), F, G, h, lam, strategy.num_dims)
        return state, aux, h

    @jax.jit
    def reeval(key, state, population, h):
        index, valid, again = reeval_points(setup, key, state, population, h, lam)
        return index, valid, phenotypes(setup, again)[1]

    @jax.jit
    def treat(state, aux, h, F2, G2, index, valid, repeats):
        if G2 is not None:
            F2 = F2 + jnp.sum(al_lib.al_penalties(aux.al, G2), axis=-1)
        return treat_noise(setup, aux, state, h, F2, index, valid, lam, repeats)

    stop = jax.jit(strategy.stop)

    def constraint_values(X):
        return None if setup.constraints is None else jnp.asarray(setup.constraints(X), dtype)

    t0 = time.perf_counter()
    if verbose > 0:
        print("Iterat #Fevals   function value  axis ratio  sigma  min&max std  t[m:s]")
    while True:
        key, k_ask = jax.random.split(key)
        population, state, unrepaired, points = ask(k_ask, state)
        X = np.asarray(points)
        repeats = int(evaluations_per_value(aux))
        F = evaluate(X, repeats=repeats)
        G = constraint_values(X)
        state, aux, h = tell(state, aux, population, unrepaired, points, jnp.asarray(F, dtype), G)
        if setup.noise is not None:
            index, valid, moved = reeval(jax.random.fold_in(k_ask, 2), state, population, h)
            X2 = np.asarray(moved)
            # only the rows in use are evaluated; the others keep a placeholder
            used = np.asarray(valid)
            F2 = np.zeros(X2.shape[0])
            F2[used] = evaluate(X2[used], repeats=repeats)
            G2 = None
            if setup.constraints is not None:
                G2 = np.zeros((X2.shape[0], setup.num_constraints))
                G2[used] = setup.constraints(X2[used])
            state, aux = treat(
                state, aux, h, jnp.asarray(F2, dtype), G2, index, valid, jnp.asarray(repeats)
            )
        flags = stop(state, stop_options)
        ok = np.isfinite(F) & (True if G is None else np.all(np.asarray(G) <= 0, axis=1))
        if ok.any() and F[ok].min() < best[1]:
            i = int(np.argmin(np.where(ok, F, np.inf)))
            best = (X[i].astype(np.float64), float(F[i]))
        it, evals = int(state.generation), evals_before + int(state.evals)
        D = np.asarray(state.D) if hasattr(state, "D") else np.ones(1)
        sigma = float(state.sigma)
        fin = F[np.isfinite(F)]
        fgen = float(fin.min()) if fin.size else float("nan")
        history.append((len(history) + 1, evals, fgen, sigma, float(D[-1] / D[0])))
        done = bool(np.any(flags))
        if verbose > 0 and (it <= 3 or it % verb_disp == 0 or done):
            stds = sigma * np.sqrt(np.diag(np.asarray(state.C)))
            elapsed = time.perf_counter() - t0
            print(
                f"{it:6d} {evals:7d} {fgen:+.9e} {D[-1] / D[0]:7.1e} {sigma:7.2e} "
                f"{stds.min():6.0e} {stds.max():6.0e} {int(elapsed // 60)}:{elapsed % 60:04.1f}"
            )
        if done:
            return state, flags, best
