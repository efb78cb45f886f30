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
from typing import Any, NamedTuple


class Strategy(NamedTuple):
    """Static configuration and the pure functions of an evolution strategy.

    Attributes:
      name: a short name, e.g. ``"cma_es"``.
      num_dims: dimension of the search space.
      popsize: number of candidates per generation (lambda).
      options: the static options the strategy was built with (a tuple of pairs).
      default_params: ``() -> params`` with the strategy's default hyperparameters.
      init: ``(key, x0, sigma0, params=None) -> state``.
      ask: ``(key, state, *, active=True) -> (population, state)``; ``population`` has
        shape ``(popsize, num_dims)``. A batched driver passes ``active=False`` for runs
        that have finished so that they never trigger work for the whole batch.
      tell: ``(state, population, fitness) -> state`` for fitness of shape ``(popsize,)``.
      stop: ``(state, options=None) -> flags``, one boolean per name in
        `evojax_cma.STOP_NAMES`.
      stop_options: ``(**overrides) -> StopOptions`` with pycma's defaults.
    """

    name: str
    num_dims: int
    popsize: int
    options: tuple[tuple[str, Any], ...]
    default_params: Callable[[], Any]
    init: Callable[..., Any]
    ask: Callable[..., Any]
    tell: Callable[..., Any]
    stop: Callable[..., Any]
    stop_options: Callable[..., Any]
