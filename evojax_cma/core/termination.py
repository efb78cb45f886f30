r"""Termination criteria with pycma's names, defaults and formulas, as jittable predicates.

`StopOptions` holds the thresholds (a pytree of arrays: it can be vmapped like params);
`FitnessHistory` is the bookkeeping a strategy updates in ``tell``; `stop_flags` returns
one boolean per criterion, in the order of `CRITERIA`. Setting a threshold to 0 turns
``tolupsigma``, ``tolstagnation`` and ``tolconditioncov`` off, as in pycma; ``ftarget``
(-inf), ``maxfevals`` (inf) and the ``tol*`` values (0) can be moved out of reach.

The formulas, read off pycma 4.5 ``_CMAStopDict._update`` (``n`` dimensions,
``λ`` popsize, ``f`` the sorted fitness of the last generation):

========================  ==============================================================
``ftarget``               best f ever <= ftarget
``maxfevals``             evaluations > maxfevals
``maxiter``               iterations >= maxiter; default ``100 + 150 (n+3)^2 // sqrt(λ)``
``tolfun``                range of f and of the recent best-f history < tolfun (1e-11)
``tolfunhist``            more than 9 entries and range of recent best f < tolfunhist
``tolflatfitness``        ``f[0] == f[int(0.75 λ)]`` in more than tolflatfitness (1)
                          consecutive iterations
``tolstagnation``         no improvement of the medians of best and median f over two
                          windows; default ``int(100 + 100 n^1.5 / λ)``
``tolx``                  ``σ sqrt(C_ii) < tolx`` and ``σ |p_c,i| < tolx`` for all i
``tolfacupx``             ``σ sqrt(C_ii) > σ0 * tolfacupx`` for some i (1e3)
``tolupsigma``            ``σ / max(D) > σ0 * tolupsigma`` (1e20)
``tolconditioncov``       ``max(D) > sqrt(tolconditioncov) * min(D)`` (1e14)
``noeffectaxis``          adding ``0.1 σ D_i B_i`` leaves the mean unchanged, i = t mod n
``noeffectcoord``         adding ``0.2 σ sqrt(C_ii)`` leaves some coordinate unchanged
``invalid_input``         not an option: the run's input is invalid (below); set before
                          the first generation, so a driver's loop never starts the run
========================  ==============================================================

(About 430 lines, over the project's ~400: thirteen criteria with their formulas, the
bookkeeping they read and the per-strategy stop functions belong in one place.)

``invalid_input`` is this library's own flag, the last of `STOP_NAMES`. Drivers check
concrete input before tracing and raise; a value only known inside the user's own ``jit``
or ``vmap`` cannot raise, so the state reports it instead: σ0 outside
``[sqrt(tiny), sqrt(max)]`` of the state's dtype (σ0 <= 0, NaN, inf, or a value whose square
is not a normal number), a non-finite start point (checked before the first generation), or
a params value outside the strategy's ranges (`evojax_cma.core.validation.Range`; NaN
included). Such a run stops at once with this flag alone and its state is the initial one;
the other runs of a vmapped batch are untouched.

Differences from pycma, all deliberate: ``tolx`` compares ``|p_c|`` (pycma compares the
signed path, so negative components always pass); the best-f history of ``tolfun`` holds
``floor(10 + 30 n / λ)`` entries as in pycma, but the ``tolstagnation`` windows keep the
length ``tolstagnation / 10`` fixed, where pycma lets them grow to a tenth of the whole run
once the run is longer than ``tolstagnation`` iterations (a growing window needs unbounded
memory), and are capped at `MAX_STAGNATION_WINDOW` entries (the default tolstagnation grows
as ``n^1.5 / λ``: at n = 1e6, λ = 100 uncapped windows would take 1.6 GB of float32
memory); the flat-fitness counter is advanced in ``tell`` rather than in ``stop()``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax.numpy as jnp
import numpy as np
from jax import Array

from evojax_cma.core import validation
from evojax_cma.core.validation import check_options

CRITERIA: tuple[str, ...] = (
    "ftarget",
    "maxfevals",
    "maxiter",
    "tolfun",
    "tolfunhist",
    "tolflatfitness",
    "tolstagnation",
    "tolx",
    "tolfacupx",
    "tolupsigma",
    "tolconditioncov",
    "noeffectaxis",
    "noeffectcoord",
)
"""Names of the termination options (pycma's), in the order of `stop_flags`' flags."""

STOP_NAMES: tuple[str, ...] = (*CRITERIA, "invalid_input")
"""Names of the flags a strategy's ``stop`` returns: the `CRITERIA`, then ``invalid_input``."""


class StopOptions(NamedTuple):
    """Thresholds of the termination criteria (pycma's option names and meanings)."""

    ftarget: Array
    maxfevals: Array
    maxiter: Array
    tolfun: Array
    tolfunhist: Array
    tolflatfitness: Array
    tolstagnation: Array
    tolx: Array
    tolfacupx: Array
    tolupsigma: Array
    tolconditioncov: Array
    noeffectaxis: Array
    noeffectcoord: Array


def default_tolstagnation(num_dims: int, popsize: int) -> int:
    """Pycma's default ``int(100 + 100 * n**1.5 / popsize)``."""
    return int(100 + 100 * num_dims**1.5 / popsize)


def only_maxiter(generations: Any) -> dict[str, Any]:
    """Options that run exactly `generations` generations: every other criterion off.

    (``invalid_input`` still stops a run with invalid input at once.)
    """
    return dict(
        ftarget=-math.inf,
        maxfevals=math.inf,
        maxiter=generations,
        tolfun=0.0,
        tolfunhist=0.0,
        tolflatfitness=math.inf,
        tolstagnation=0,
        tolx=0.0,
        tolfacupx=math.inf,
        tolupsigma=0.0,
        tolconditioncov=0.0,
        noeffectaxis=False,
        noeffectcoord=False,
    )


def default_stop_options(num_dims: int, popsize: Any) -> dict[str, Any]:
    """Pycma 4.5's default thresholds for dimension `num_dims` and `popsize`.

    `popsize` may be a traced integer (restarts change it inside ``jit``).
    """
    return dict(
        ftarget=-math.inf,
        maxfevals=math.inf,
        maxiter=100.0 + (150 * (num_dims + 3) ** 2) // popsize**0.5,
        tolfun=1e-11,
        tolfunhist=1e-12,
        tolflatfitness=1.0,
        tolstagnation=(100.0 + 100.0 * num_dims**1.5 / popsize) // 1,
        tolx=1e-11,
        tolfacupx=1e3,
        tolupsigma=1e20,
        tolconditioncov=1e14,
        noeffectaxis=True,
        noeffectcoord=True,
    )


def make_stop_options(
    num_dims: int, popsize: Any, dtype: Any = None, **overrides: Any
) -> StopOptions:
    """Build `StopOptions` from pycma's defaults and `overrides` (pycma names).

    Raises:
      TypeError: for an option name that is not one of `CRITERIA`, or a value that is not
        a real number (``ftarget="abc"``, ``maxiter=None``, a complex number).
      ValueError: a value that is not a scalar, a concrete NaN, or ``maxiter`` /
        ``maxfevals`` < 1 (a run makes at least one generation).
    """
    check_options("termination option(s)", overrides, frozenset(CRITERIA))
    for name, value in overrides.items():
        check_stop_option(name, value)
    values = default_stop_options(num_dims, popsize)
    values.update(overrides)
    dtype = dtype or jnp.result_type(float)
    fields = {}
    for name in CRITERIA:
        fields[name] = validation.as_array(
            values[name], bool if name.startswith("noeffect") else dtype
        )
    return StopOptions(**fields)


def check_stop_option(name: str, value: Any) -> None:
    """Check one termination option's value before tracing (see `make_stop_options`)."""
    if (
        isinstance(value, str)
        or value is None
        or not (isinstance(value, numbers.Real) or hasattr(value, "dtype"))
    ):
        raise TypeError(
            f"termination option {name} must be a real number, got {type(value).__name__} {value!r}"
        )
    validation.check_real_dtype(f"termination option {name}", value)
    value = cast(Any, value)
    if np.ndim(value) != 0:
        raise ValueError(
            f"termination option {name} must be a scalar, got shape {np.shape(value)} "
            "(vmap over StopOptions for one value per run)"
        )
    if not validation.is_concrete(value):
        return
    v = float(np.asarray(value))
    if math.isnan(v):
        raise ValueError(f"termination option {name} must not be NaN")
    if name in ("maxiter", "maxfevals") and not v >= 1:
        raise ValueError(f"termination option {name} must be >= 1, got {v}")


MAX_STAGNATION_WINDOW = 10_000
"""Cap on the entries of each ``tolstagnation`` window (one entry per 5 iterations)."""


class FitnessHistory(NamedTuple):
    """Bookkeeping of fitness values that the fitness-based criteria read."""

    recent_best: Array  # (H,) ring buffer: best f of the last H iterations
    last_range: Array  # f[-1] - f[0] of the last iteration
    flat_count: Array  # consecutive iterations with flat fitness
    best_5: Array  # (S,) ring buffer: best f every 5th iteration
    median_5: Array  # (S,) ring buffer: median f every 5th iteration
    num_5: Array  # entries ever written to best_5 / median_5


def history_sizes(num_dims: int, popsize: int) -> tuple[int, int]:
    """Capacities ``(H, S)`` of the two ring buffers of `FitnessHistory`."""
    recent = int(10 + 30 * num_dims / popsize)
    window = min(default_tolstagnation(num_dims, popsize) // 10, MAX_STAGNATION_WINDOW)
    return recent, 2 * window


def init_history(num_dims: int, popsize: int, dtype: Any) -> FitnessHistory:
    """Empty history (``+inf`` marks unused entries)."""
    recent, stag = history_sizes(num_dims, popsize)
    return FitnessHistory(
        recent_best=jnp.full((recent,), jnp.inf, dtype),
        last_range=jnp.asarray(jnp.inf, dtype),
        flat_count=jnp.asarray(0, jnp.int32),
        best_5=jnp.full((stag,), jnp.inf, dtype),
        median_5=jnp.full((stag,), jnp.inf, dtype),
        num_5=jnp.asarray(0, jnp.int32),
    )


def update_history(
    hist: FitnessHistory, sorted_f: Array, iteration: Array, count: Any = None
) -> FitnessHistory:
    """Record the sorted (effective) fitness of iteration `iteration` (1-based).

    Only the first `count` entries (default all; may be traced) are the population's; the
    rest is padding that sorts last.
    """
    lam = sorted_f.shape[0] if count is None else count
    h = hist.recent_best.shape[0]
    recent = hist.recent_best.at[(iteration - 1) % h].set(sorted_f[0])
    i = lam // 2
    median = jnp.where(lam % 2 == 1, sorted_f[i], 0.5 * (sorted_f[i - 1] + sorted_f[i]))
    flat = ~(sorted_f[0] < sorted_f[(3 * lam) // 4])
    flat_count = jnp.where(flat, hist.flat_count + 1, 0)
    s = hist.best_5.shape[0]
    record = (iteration % 5 == 0) & (s > 0)
    slot = hist.num_5 % max(s, 1)
    best_5 = jnp.where(record, hist.best_5.at[slot].set(sorted_f[0]), hist.best_5)
    median_5 = jnp.where(record, hist.median_5.at[slot].set(median), hist.median_5)
    return FitnessHistory(
        recent_best=recent,
        # equal ends (all +inf: every value non-finite) have range 0, not inf - inf = NaN
        last_range=jnp.where(
            sorted_f[lam - 1] == sorted_f[0], 0.0, sorted_f[lam - 1] - sorted_f[0]
        ).astype(hist.last_range.dtype),
        flat_count=flat_count.astype(jnp.int32),
        best_5=best_5,
        median_5=median_5,
        num_5=hist.num_5 + record.astype(jnp.int32),
    )


def _range(x: Array, valid: Array) -> Array:
    return jnp.max(jnp.where(valid, x, -jnp.inf)) - jnp.min(jnp.where(valid, x, jnp.inf))


def _window_medians(buf: Array, num: Array, window: Array) -> tuple[Array, Array]:
    """Medians of the newest `window` entries and of the `window` entries before them."""
    s = buf.shape[0]
    age = (num - 1 - jnp.arange(s)) % s  # 0 for the newest entry
    newest = jnp.where(age < window, buf, jnp.nan)
    older = jnp.where((age >= window) & (age < 2 * window), buf, jnp.nan)
    return jnp.nanmedian(newest), jnp.nanmedian(older)


class DistributionSummary(NamedTuple):
    """What the distribution-based criteria read from a Gaussian strategy's state."""

    mean: Array
    sigma: Array
    sigma0: Array
    stds: Array  # sqrt(diag C), without sigma
    p_c: Array
    B: Array | None  # (n, n) eigenvectors as columns; None for a diagonal model (B = I)
    D: Array  # (n,) axis lengths (any order), without sigma


def diagonal_summary(
    mean: Array, sigma: Array, sigma0: Array, stds: Array, p_c: Array | None = None
) -> DistributionSummary:
    """`DistributionSummary` of ``N(mean, sigma^2 diag(stds^2))`` (axes = coordinates)."""
    return DistributionSummary(
        mean=mean,
        sigma=sigma,
        sigma0=sigma0,
        stds=stds,
        p_c=jnp.zeros_like(stds) if p_c is None else p_c,
        B=None,
        D=stds,
    )


def stop_flags(
    opts: StopOptions,
    hist: FitnessHistory,
    dist: DistributionSummary,
    *,
    iteration: Array,
    evals: Array,
    best_f: Array,
    best_evals: Array,
    popsize: Any,
) -> Array:
    """One boolean per criterion of `CRITERIA`; pure and jittable."""
    n = dist.mean.shape[0]
    dtype = dist.mean.dtype
    it = iteration.astype(dtype)
    h = hist.recent_best.shape[0]
    n_recent = jnp.minimum(iteration, h)
    hist_range = _range(hist.recent_best, jnp.arange(h) < n_recent)

    s = hist.best_5.shape[0]
    if s >= 2:
        window = jnp.clip(jnp.floor(opts.tolstagnation / 10.0), 1, s // 2).astype(jnp.int32)
        med_new, med_old = _window_medians(hist.median_5, hist.num_5, window)
        best_new, best_old = _window_medians(hist.best_5, hist.num_5, window)
        stagnation = (
            (opts.tolstagnation > 0)
            & (it > n * (5 + 100 / popsize))
            & ((evals - best_evals).astype(dtype) / popsize > opts.tolstagnation / 2)
            & (hist.num_5 > 100)
            & (2 * window < hist.num_5)
            & (med_new >= med_old)
            & (best_new >= best_old)
        )
    else:
        stagnation = jnp.asarray(False)

    scaled_stds = dist.sigma * dist.stds
    axis = iteration % n
    if dist.B is None:
        axis_step = (0.1 * dist.sigma * dist.D[axis]) * (jnp.arange(n) == axis).astype(dtype)
    else:
        axis_step = 0.1 * dist.sigma * dist.D[axis] * dist.B[:, axis]
    flags = dict(
        ftarget=best_f <= opts.ftarget,
        maxfevals=evals.astype(dtype) > opts.maxfevals,
        maxiter=it >= opts.maxiter,
        tolfun=(hist.last_range < opts.tolfun) & (hist_range < opts.tolfun),
        tolfunhist=(n_recent > 9) & (hist_range < opts.tolfunhist),
        tolflatfitness=hist.flat_count.astype(dtype) > opts.tolflatfitness,
        tolstagnation=stagnation,
        tolx=jnp.all(scaled_stds < opts.tolx) & jnp.all(dist.sigma * jnp.abs(dist.p_c) < opts.tolx),
        tolfacupx=jnp.any(scaled_stds > dist.sigma0 * opts.tolfacupx),
        tolupsigma=(opts.tolupsigma > 0)
        & (dist.sigma / jnp.max(dist.D) > dist.sigma0 * opts.tolupsigma),
        tolconditioncov=(opts.tolconditioncov > 0)
        & (jnp.max(dist.D) > jnp.sqrt(opts.tolconditioncov) * jnp.min(dist.D)),
        noeffectaxis=opts.noeffectaxis & jnp.all(dist.mean == dist.mean + axis_step),
        noeffectcoord=opts.noeffectcoord & jnp.any(dist.mean == dist.mean + 0.2 * scaled_stds),
    )
    return jnp.stack([jnp.asarray(flags[name], bool) for name in CRITERIA])


def make_stop_functions(
    num_dims: int,
    popsize: int,
    defaults: dict[str, Any],
    summary: Callable[[Any], DistributionSummary],
    popsize_of: Callable[[Any], Any] | None = None,
    params_ok: Callable[[Any], Any] | None = None,
) -> tuple[Callable[..., StopOptions], Callable[..., Array]]:
    """Build a strategy's ``stop_options(**overrides)`` and ``stop(state, options=None)``.

    Args:
      num_dims: the strategy's dimension.
      popsize: the strategy's population size.
      defaults: the strategy's own default thresholds (pycma names), validated here.
      summary: maps a state to its `DistributionSummary`. The state must have the fields
        ``history``, ``generation``, ``evals``, ``best_f`` and ``best_evals``.
      popsize_of: maps a state to its (possibly traced) population size, for strategies
        whose active λ is a parameter (default: `popsize`).
      params_ok: maps params to a traced boolean, whether they are in range (for
        ``invalid_input``; default: always).
    """
    make_stop_options(num_dims, popsize, **defaults)  # validate early

    def stop_options(**overrides: Any) -> StopOptions:
        """Pycma's default termination thresholds, updated by the strategy's and `overrides`."""
        return make_stop_options(num_dims, popsize, **{**defaults, **overrides})

    def stop(state: Any, options: StopOptions | None = None) -> Array:
        """Flags of `STOP_NAMES` (the criteria after a ``tell``, and ``invalid_input``)."""
        options = stop_options() if options is None else options
        flags = stop_flags(
            options,
            state.history,
            summary(state),
            iteration=state.generation,
            evals=state.evals,
            best_f=state.best_f,
            best_evals=state.best_evals,
            popsize=popsize if popsize_of is None else popsize_of(state),
        )
        ok = validation.input_ok(state.mean, state.sigma0, state.generation)
        if params_ok is not None:
            ok = ok & params_ok(state.params)
        invalid = ~ok
        # a run with invalid input reports that alone, from before its first generation
        flags = flags & (state.generation > 0) & ~invalid
        return jnp.concatenate([flags, invalid[None]])

    return stop_options, stop


def stop_reasons(flags: Any) -> list[str]:
    """Names of the criteria set in `flags` (host-side helper; accepts a batch)."""
    flags = np.asarray(flags)
    if flags.ndim > 1:
        return [stop_reasons(f) for f in flags]  # type: ignore[return-value]
    return [name for name, on in zip(STOP_NAMES, flags, strict=True) if on]
