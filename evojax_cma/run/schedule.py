r"""The IPOP/BIPOP restart schedule (pycma's ``fmin2``), pure and jittable, driver-agnostic.

References:
  A. Auger, N. Hansen. A restart CMA evolution strategy with increasing population size.
  CEC 2005 (IPOP-CMA-ES).
  N. Hansen. Benchmarking a BI-population CMA-ES on the BBOB-2009 function testbed.
  GECCO 2009 workshops (BIPOP-CMA-ES).
  N. Hansen et al. pycma 4.5, ``cma.fmin2(..., restarts=, incpopsize=, bipop=)``, whose
  schedule is reproduced here (`plan_next_run`).

Schedule (pycma's ``fmin``). A run ends when any termination criterion fires. The whole
optimisation ends on ``ftarget``, on ``maxfevals`` (counted over all runs), or when more
than ``restarts`` runs with a *large* population have ended. Otherwise the next run starts
from a new ``x0`` (fixed, or drawn by a function of a key) with

* IPOP: :math:`\lambda_k = \lambda_0 \cdot \text{incpopsize}^k` for the ``k``-th restart;
* BIPOP: the first run counts as *small*. While the evaluations spent in small runs are
  below ``bipop`` times those spent in large runs, the next run is small: step size
  :math:`\sigma_0 \cdot 10^{-2 U_1}`, :math:`\lambda = \lfloor\lambda_0 \cdot
  (\text{incpopsize}^{k})^{U_2^2}\rfloor` with ``k`` the number of large runs so far, and
  ``maxiter`` at most half the large-run evaluations divided by λ; else the next run is
  large (IPOP's λ for the next ``k``, σ0) and ``k`` grows.

The driver that runs it inside ``jit`` is `evojax_cma.run.restarts`; the host driver
`evojax_cma.fmin` calls the same functions.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import Array

from evojax_cma.core import prng, termination
from evojax_cma.core.validation import MAX_ELEMENTS, check_int, check_rows
from evojax_cma.strategies.cma_family import default_popsize


class RestartConfig(NamedTuple):
    """Static settings of the restart schedule (pycma's ``fmin2`` argument names)."""

    popsize: int  # λ0
    restarts: int  # maximal number of restarts with a large population
    incpopsize: float
    bipop: float  # 0: IPOP; else the small/large budget ratio (True = 1)
    max_popsize: int


def restart_config(
    num_dims: int,
    popsize: int | None = None,
    restarts: int = 9,
    incpopsize: float = 2,
    bipop: bool | float = False,
    max_popsize: int | None = None,
) -> RestartConfig:
    """Check the schedule's settings and fix ``max_popsize`` (default ``λ0 incpopsize^restarts``).

    Raises:
      TypeError, ValueError: for a ``restarts < 0``, ``incpopsize < 1``, a negative
        ``bipop``, ``max_popsize < popsize``, or a ``max_popsize`` (given or implied by
        ``restarts``) of more than ``2**31 - 1`` numbers, before anything is traced.
    """
    lam0 = default_popsize(num_dims) if popsize is None else check_int("popsize", popsize, 2)
    restarts = check_int("restarts", restarts, 0)
    if isinstance(incpopsize, bool) or not isinstance(incpopsize, int | float):
        raise TypeError(f"incpopsize must be a number, got {incpopsize!r}")
    if not incpopsize >= 1:
        raise ValueError(f"incpopsize must be >= 1, got {incpopsize}")
    if not isinstance(bipop, bool | int | float) or not float(bipop) >= 0:
        raise ValueError(f"bipop must be a bool or a number >= 0, got {bipop!r}")
    if max_popsize is None:
        log_rows = math.log(lam0) + restarts * math.log(incpopsize)
        if log_rows + math.log(num_dims) > math.log(MAX_ELEMENTS):
            raise ValueError(
                f"restarts={restarts} with incpopsize={incpopsize} needs max_popsize = "
                f"popsize * incpopsize**restarts = {math.exp(min(log_rows, 700)):.3g} rows of "
                f"{num_dims} numbers; the limit is 2**31 - 1 numbers: pass fewer restarts "
                "or max_popsize"
            )
        max_popsize = int(lam0 * float(incpopsize) ** restarts)
    max_popsize = check_int("max_popsize", max_popsize, lam0)
    check_rows("max_popsize", max_popsize, num_dims)
    return RestartConfig(lam0, restarts, float(incpopsize), float(bipop), max_popsize)


class Schedule(NamedTuple):
    """Where a run is in the restart schedule (a pytree of scalars; vmappable)."""

    runs: Array  # runs started so far
    small_runs: Array  # of them, BIPOP small runs
    small_evals: Array  # evaluations of finished small runs (BIPOP counts run 0 as small)
    large_evals: Array  # evaluations of finished large runs
    small: Array  # whether the current run is small
    popsize: Array  # λ of the current run
    evals_before: Array  # evaluations of all finished runs


def first_run(config: RestartConfig) -> Schedule:
    """The schedule during the first run (λ0; counted as small by BIPOP)."""
    i0, f0 = jnp.asarray(0, jnp.int32), jnp.asarray(0.0)
    return Schedule(
        runs=jnp.asarray(1, jnp.int32),
        small_runs=i0,
        small_evals=f0,
        large_evals=f0,
        small=jnp.asarray(True),
        popsize=jnp.asarray(config.popsize, jnp.int32),
        evals_before=i0,
    )


def plan_next_run(
    config: RestartConfig, schedule: Schedule, run_evals: Array, key: Array
) -> tuple[Schedule, Array, Array, Array]:
    """Account for a finished run of `run_evals` evaluations and plan the next one.

    Pure and jittable (the host driver calls it too). Returns ``(schedule, sigma_factor,
    maxiter_cap, exhausted)``: the next run uses ``schedule.popsize``, ``sigma0 *
    sigma_factor`` and at most `maxiter_cap` iterations; `exhausted` says that no run
    follows (``restarts`` large runs done, or λ would exceed ``max_popsize``).
    """
    run_evals = jnp.asarray(run_evals).astype(schedule.small_evals.dtype)
    small_evals = schedule.small_evals + jnp.where(schedule.small, run_evals, 0.0)
    large_evals = schedule.large_evals + jnp.where(schedule.small, 0.0, run_evals)
    runs = schedule.runs  # index of the next run (pycma's irun after the increment)
    exhausted = runs - schedule.small_runs > config.restarts
    if config.bipop > 0:
        small = small_evals < config.bipop * jnp.maximum(1.0, large_evals)
    else:
        small = jnp.asarray(False)
    small_runs = schedule.small_runs + small.astype(jnp.int32)
    u1, u2 = prng.uniform(key, (2,))
    multiplier = config.incpopsize ** (runs - small_runs).astype(u1.dtype)
    lam_large = jnp.floor(config.popsize * multiplier + 1e-9)
    lam_small = jnp.floor(config.popsize * multiplier ** (u2**2) + 1e-9)
    lam = jnp.where(small, lam_small, lam_large)
    exhausted = exhausted | (lam > config.max_popsize)
    lam = jnp.minimum(lam, config.max_popsize).astype(jnp.int32)
    sigma_factor = jnp.where(small, 0.01**u1, 1.0)
    maxiter_cap = jnp.where(small, 0.5 * large_evals / lam, jnp.inf)
    schedule = Schedule(
        runs=runs + 1,
        small_runs=small_runs,
        small_evals=small_evals,
        large_evals=large_evals,
        small=small,
        popsize=lam,
        evals_before=schedule.evals_before + run_evals.astype(jnp.int32),
    )
    return schedule, sigma_factor, maxiter_cap, exhausted


def run_stop_options(
    num_dims: int,
    popsize: Array,
    overrides: dict[str, Any],
    evals_before: Array,
    maxiter_cap: Array,
) -> termination.StopOptions:
    """Termination thresholds of one run.

    Pycma's defaults for its λ, the user's overrides, ``maxfevals`` counted over all runs
    and ``maxiter`` capped for BIPOP's small runs.
    """
    opts = termination.make_stop_options(num_dims, popsize, **overrides)
    return opts._replace(
        maxfevals=opts.maxfevals - evals_before.astype(opts.maxfevals.dtype),
        maxiter=jnp.minimum(opts.maxiter, maxiter_cap),
    )


ENDS_ALL = ("ftarget", "maxfevals", "invalid_input")
"""Flags that end the whole optimisation rather than one run."""


__all__ = [
    "ENDS_ALL",
    "RestartConfig",
    "Schedule",
    "first_run",
    "plan_next_run",
    "restart_config",
    "run_stop_options",
]
