"""The interface every strategy implements.

A strategy is a `Strategy`: static configuration (``num_dims``, ``popsize``, ...) and pure
functions over state pytrees, in the spirit of optax's ``GradientTransformation``::

    params = strategy.default_params()
    state = strategy.init(key, x0, sigma0, params)
    population, state = strategy.ask(key, state)
    state = strategy.tell(state, population, fitness)   # minimisation
    flags = strategy.stop(state, strategy.stop_options())

Numeric hyperparameters live in ``params`` (stored in the state by ``init``), so
``jax.vmap`` over params sweeps them without rebuilding or recompiling the strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax.numpy as jnp

COVARIANCE = "covariance"
"""Capability: the state has ``sigma`` and a full covariance ``C`` of shape ``(n, n)``."""
DIAGONAL = "diagonal"
"""Capability: the state has ``sigma`` and a diagonal covariance ``C`` of shape ``(n,)``."""
WEIGHTED = "weighted"
"""Capability: ``params.weights`` are CMA recombination weights ``(popsize,)`` (best first)."""
MASKED_POPSIZE = "masked_popsize"
"""Capability: ``params.popsize`` is the number of leading rows that form the generation."""
CHUNKED = "chunked"
"""Capability: ``ask_chunk`` and ``tell_keyed`` evaluate a population chunk by chunk."""


class Strategy(NamedTuple):
    """Static configuration and the pure functions of an evolution strategy.

    Attributes:
      name: a short name, e.g. ``"cma_es"``.
      num_dims: dimension of the search space.
      popsize: number of candidates per generation (lambda).
      options: the static options the strategy was built with (a tuple of pairs).
      default_params: ``(**overrides) -> params``: the strategy's default hyperparameters,
        with what depends on an overridden field re-derived (traced values allowed).
      init: ``(key, x0, sigma0, params=None) -> state``.
      ask: ``(key, state, *, running=True) -> (population, state)``; ``population`` has
        shape ``(popsize, num_dims)``. A batched driver passes ``running=False`` for runs
        that have finished so that they never trigger work for the whole batch.
      tell: ``(state, population, fitness) -> state`` for fitness of shape ``(popsize,)``.
      stop: ``(state, options=None) -> flags``, one boolean per name in
        `evojax_cma.STOP_NAMES`.
      stop_options: ``(**overrides) -> StopOptions`` with pycma's defaults.
      ask_chunk: for strategies that support huge populations (`evojax_cma.open_es`,
        `evojax_cma.variational`), ``(key, state, index) -> points`` of chunk `index`
        (``chunk_size`` rows) of the population ``ask(key, state)`` would return; else None.
      tell_keyed: ``(key, state, fitness) -> state``, the ``tell`` that regenerates the
        noise of the ``ask`` `key` chunk by chunk instead of reading the population (the
        points must be those ``ask_chunk`` produced); else None.
      chunk_size: rows per chunk (``popsize`` when the strategy has no chunks).
      summary: ``state -> DistributionSummary`` (mean, sigma, per-coordinate stds, ...):
        what drivers, termination and displays read from any strategy's state.
      capabilities: what the state offers beyond the interface (`COVARIANCE`,
        `DIAGONAL`, `WEIGHTED`, `MASKED_POPSIZE`, `CHUNKED`), declared by the strategy
        instead of being guessed from its fields.
      check_params: ``params -> params``: the checks ``init`` makes of user params (type,
        shapes, and the values of concrete fields against the strategy's ranges, e.g.
        ``0 < c_sigma < 1``), raising `TypeError`/`ValueError`. The drivers call it before
        tracing, where ``init`` (inside their ``jit``) would see only shapes; values only
        known under the user's own ``jit`` are reported as ``invalid_input`` by ``stop``.
      metrics: ``state -> dict`` of the per-generation metrics of the state (the one place
        a strategy exposes them; `evojax_cma.history` records them): `summary_metrics`
        for every strategy, plus ``grad_norm`` and ``step_size`` for the score-function
        strategies (`METRICS` lists the names).

    Two strategies compare equal (and hash alike) when their name, dimension, popsize,
    chunk size, static options and the definitions of their functions (module and
    qualified name) are equal: a strategy built twice with the same arguments is the same
    static argument to ``jit``, so nothing recompiles, while ``_replace(tell=...)`` with
    another function gives a different strategy.
    """

    name: str
    num_dims: int
    popsize: int
    options: tuple[tuple[str, Any], ...]
    default_params: Callable[..., Any]
    init: Callable[..., Any]
    ask: Callable[..., Any]
    tell: Callable[..., Any]
    stop: Callable[..., Any]
    stop_options: Callable[..., Any]
    ask_chunk: Callable[..., Any] | None = None
    tell_keyed: Callable[..., Any] | None = None
    chunk_size: int | None = None
    summary: Callable[[Any], Any] | None = None
    capabilities: frozenset[str] = frozenset()
    check_params: Callable[[Any], Any] | None = None
    metrics: Callable[[Any], dict[str, Any]] | None = None

    def _identity(self) -> tuple[Any, ...]:
        functions = tuple(_function_identity(getattr(self, f)) for f in _FUNCTION_FIELDS)
        return (self.name, self.num_dims, self.popsize, self.chunk_size, self.options, functions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Strategy) and self._identity() == other._identity()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self._identity())


_FUNCTION_FIELDS = ("default_params", "init", "ask", "tell", "stop", "stop_options")
_FUNCTION_FIELDS += ("ask_chunk", "tell_keyed", "summary", "check_params", "metrics")

METRICS = ("sigma", "axis_ratio", "axis_lengths", "stds", "mean", "grad_norm", "step_size")
"""The names a ``Strategy.metrics`` dict may hold (a strategy gives those it has).

``sigma`` (the geometric mean for a per-coordinate σ), ``axis_ratio`` (longest over
shortest axis), ``axis_lengths`` (sorted square roots of the eigenvalues of C, without σ),
``stds`` (σ times the per-coordinate standard deviations), ``mean``; for `open_es` and
`variational` also ``grad_norm`` (the norm of the mean's search-gradient estimate that
was handed to the optimiser) and ``step_size`` (the norm of the update the optimiser
applied to the mean)."""


def summary_metrics(summary: Callable[[Any], Any], state: Any) -> dict[str, Any]:
    """The metrics every strategy has, read from its ``summary`` (see `METRICS`)."""
    s = summary(state)
    axes = jnp.sort(s.D)
    dtype = s.mean.dtype
    return dict(
        sigma=jnp.asarray(s.sigma, dtype),
        axis_ratio=axes[-1] / axes[0],
        axis_lengths=axes,
        stds=s.sigma * jnp.broadcast_to(s.stds, s.mean.shape),
        mean=s.mean,
    )


def strategy_metrics(strategy: Strategy, state: Any) -> dict[str, Any]:
    """``strategy.metrics(state)``, or `summary_metrics` for a strategy built without it."""
    if strategy.metrics is not None:
        return strategy.metrics(state)
    if strategy.summary is None:
        raise ValueError(f"strategy {strategy.name!r} has neither metrics nor summary")
    return summary_metrics(strategy.summary, state)


def _function_identity(fn: Any) -> Any:
    """Where a function is defined (module, qualified name), through ``functools.partial``."""
    if fn is None:
        return None
    while hasattr(fn, "func") and hasattr(fn, "args"):  # functools.partial
        fn = fn.func
    return (getattr(fn, "__module__", None), getattr(fn, "__qualname__", repr(type(fn))))


def build_strategy(
    name: str,
    num_dims: int,
    popsize: int,
    options: dict[str, Any],
    stop_defaults: dict[str, Any],
    functions: dict[str, Callable[..., Any]],
    capabilities: set[str] | frozenset[str],
    *,
    popsize_of: Callable[[Any], Any] | None = None,
    chunk_size: int | None = None,
    params_ok: Callable[[Any], Any] | None = None,
) -> Strategy:
    """A `Strategy` from a factory's pieces, with pycma's termination wired in.

    Args:
      name: the strategy's short name.
      num_dims: n.
      popsize: rows of ``ask``'s population.
      options: the static settings (with `stop_defaults`, they make the strategy's
        identity: list every setting that changes its behaviour).
      stop_defaults: the strategy's own default thresholds (pycma names).
      functions: ``default_params``, ``init``, ``ask``, ``tell``, ``summary``,
        ``check_params`` (and, for chunked strategies, ``ask_chunk`` and ``tell_keyed``;
        ``metrics`` where the strategy has more than `summary_metrics`, which is the
        default).
      capabilities: what the state offers (the constants of this module).
      popsize_of: the (possibly traced) λ of a state, where it is a parameter.
      chunk_size: rows per chunk, for chunked strategies.
      params_ok: ``params -> traced bool``, whether params are in range (the jittable
        twin of ``check_params``; its failure is the ``invalid_input`` stop flag).
    """
    from evojax_cma.core.termination import make_stop_functions  # noqa: PLC0415

    functions = dict(functions)
    functions.setdefault("metrics", partial(summary_metrics, functions["summary"]))
    stop_options, stop = make_stop_functions(
        num_dims, popsize, stop_defaults, functions["summary"], popsize_of, params_ok
    )
    return Strategy(
        name=name,
        num_dims=num_dims,
        popsize=popsize,
        options=tuple(sorted({**options, **stop_defaults}.items())),
        stop=stop,
        stop_options=stop_options,
        chunk_size=chunk_size,
        capabilities=frozenset(capabilities),
        **functions,
    )
