"""The whole optimisation inside one ``jit``: ``lax.while_loop`` over ask, evaluate, tell.

`minimize` works unchanged under ``jax.vmap`` over keys, ``x0``, ``sigma0``, params and
stop options: each run stops on its own criteria and finished runs stay frozen (a
batched ``while_loop`` keeps iterating while any run is active and keeps the carry of the
finished ones). Finished runs are passed ``active=False`` in ``ask`` so that they never
trigger a batch-wide eigendecomposition.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from evojax_cma.core.termination import StopOptions
from evojax_cma.core.types import Strategy
from evojax_cma.core.validation import check_positive_scalar, check_vector


class RunResult(NamedTuple):
    """Outcome of `minimize`.

    Attributes:
      state: the final strategy state (``best_x``, ``best_f``, ``evals``, ...).
      stop_flags: one boolean per name in `evojax_cma.STOP_NAMES`; see
        `evojax_cma.stop_reasons`.
    """

    state: Any
    stop_flags: Array


def _population_fitness(fn: Callable, batched: bool, population: Array) -> Array:
    return fn(population) if batched else jax.vmap(fn)(population)


def chunked_fitness(
    strategy: Strategy, fn: Callable, key: Array, state: Any, *, batched: bool = False
) -> Array:
    """Evaluate the population of ``ask(key, state)`` chunk by chunk (``lax.map``).

    Only ``chunk_size x n`` points exist at a time; pair it with ``strategy.tell_keyed``.
    """
    ask_chunk, chunk_size = strategy.ask_chunk, strategy.chunk_size
    if ask_chunk is None or chunk_size is None:
        raise ValueError(f"strategy {strategy.name!r} has no chunked sampling")

    def one(index):
        return _population_fitness(fn, batched, ask_chunk(key, state, index))

    num_chunks = strategy.popsize // chunk_size
    return lax.map(one, jnp.arange(num_chunks)).reshape(strategy.popsize)


@partial(jax.jit, static_argnames=("strategy", "fn", "batched", "chunked"))
def _minimize(strategy, fn, batched, chunked, key, x0, sigma0, params, options):
    state = strategy.init(key, x0, sigma0, params)
    no_stop = jnp.zeros(len(options), bool)

    def cond(carry):
        return ~jnp.any(carry[2])

    def body(carry):
        key, state, flags = carry
        key, k_ask = jax.random.split(key)
        if chunked:
            fitness = chunked_fitness(strategy, fn, k_ask, state, batched=batched)
            state = strategy.tell_keyed(k_ask, state, fitness)
        else:
            population, state = strategy.ask(k_ask, state, active=~jnp.any(flags))
            fitness = _population_fitness(fn, batched, population)
            state = strategy.tell(state, population, fitness)
        return key, state, strategy.stop(state, options)

    _, state, flags = lax.while_loop(cond, body, (key, state, no_stop))
    return RunResult(state, flags)


def minimize(
    strategy: Strategy,
    fn: Callable[[Array], Array],
    key: Array,
    x0: Any,
    sigma0: Any,
    params: Any = None,
    options: StopOptions | dict[str, Any] | None = None,
    *,
    batched: bool = False,
    chunked: bool = False,
) -> RunResult:
    """Minimise a JAX function with `strategy` until a termination criterion fires.

    Args:
      strategy: e.g. ``evojax_cma.cma_es(n)``.
      fn: a JAX-traceable objective. It maps one point ``(n,)`` to a scalar, or, with
        ``batched=True``, a population ``(popsize, n)`` to ``(popsize,)``.
      key: a PRNG key; the same key gives the same run, jitted or vmapped.
      x0: initial mean, shape ``(n,)``.
      sigma0: initial step size, > 0.
      params: hyperparameters (defaults: ``strategy.default_params()``).
      options: termination thresholds, as `StopOptions` (vmappable) or a dict of pycma
        names (``ftarget``, ``maxfevals``, ``tolfun``, ...).
      batched: whether `fn` evaluates a whole population at once (with ``chunked``: a
        whole chunk).
      chunked: evaluate and tell chunk by chunk, never forming the population
        (`chunked_fitness` and ``strategy.tell_keyed``; for `evojax_cma.open_es` and
        `evojax_cma.variational`). Same result as unchunked, to rounding.

    Returns:
      `RunResult` with the final state and the flags of the criteria that fired.

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.cma_es(5)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(5), 1.0,
      ...                   options={"ftarget": 1e-8})
      >>> bool(res.state.best_f <= 1e-8), ec.stop_reasons(res.stop_flags)
      (True, ['ftarget'])
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if options is None:
        options = strategy.stop_options()
    elif isinstance(options, dict):
        options = strategy.stop_options(**options)
    elif not isinstance(options, StopOptions):
        raise TypeError(f"options must be a StopOptions or a dict, got {type(options).__name__}")
    if params is None:
        params = strategy.default_params()
    check_vector("x0", x0, strategy.num_dims)
    check_positive_scalar("sigma0", sigma0)
    if chunked and strategy.tell_keyed is None:
        raise ValueError(f"chunked=True needs a strategy with chunks; {strategy.name!r} has none")
    return _minimize(strategy, fn, batched, chunked, key, x0, sigma0, params, options)


__all__ = ["RunResult", "chunked_fitness", "minimize"]
