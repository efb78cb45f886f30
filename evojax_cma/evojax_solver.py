"""Any strategy of this library as an EvoJAX solver (``evojax.algo.NEAlgorithm``).

EvoJAX users already have tasks, policies and a ``Trainer`` they like; `evojax_solver`
wraps a strategy so that it plugs in where EvoJAX's own algorithms go::

    from evojax.policy import MLPPolicy
    from evojax.task.cartpole import CartPoleSwingUp
    from evojax.trainer import Trainer

    policy = MLPPolicy(input_dim=5, hidden_dims=[64, 64], output_dim=1)
    solver = evojax_solver(ec.open_es(policy.num_params, 64), sigma0=0.1, seed=0)
    Trainer(policy, solver, CartPoleSwingUp(), CartPoleSwingUp(test=True),
            max_iter=100).run()

EvoJAX maximises fitness; the strategies minimise, so ``tell`` negates it. ``ask`` and
``tell`` are jit-compiled once per strategy (module-level caches: a second solver of an
equal strategy reuses them). ``best_params`` is the distribution's mean (the solution an
ES trains, which EvoJAX's Trainer tests); ``best_x`` is the best sampled point.
``save_state``/``load_state`` return and take the whole state and key, so a Trainer can
checkpoint it (`evojax_cma.checkpoint` saves it without pickle).

Reference: Y. Tang, Y. Tian, D. Ha. EvoJAX: Hardware-accelerated neuroevolution.
GECCO 2022 companion (the ``NEAlgorithm`` interface).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from evojax_cma.core import prng
from evojax_cma.core.types import Strategy


@partial(jax.jit, static_argnames="strategy")
def _ask(strategy: Strategy, key: Array, state: Any) -> tuple[Array, Array, Any]:
    key, k = prng.split(key)
    population, state = strategy.ask(k, state)
    return key, population, state


@partial(jax.jit, static_argnames="strategy")
def _tell(strategy: Strategy, state: Any, population: Array, fitness: Array) -> Any:
    return strategy.tell(state, population, -fitness.astype(state.mean.dtype))


class _Solver:
    """The adapter's behaviour; `evojax_solver` mixes in EvoJAX's ``NEAlgorithm``."""

    def __init__(self, strategy: Strategy, x0: Any, sigma0: float, seed: int, params: Any):
        if not isinstance(strategy, Strategy):
            raise TypeError(f"strategy must be an evojax_cma Strategy, got {type(strategy)}")
        n = strategy.num_dims
        x0 = jnp.zeros(n) if x0 is None else jnp.asarray(x0)
        key = jax.random.key(int(seed))
        key, k_init = prng.split(key)
        self.strategy = strategy
        self.pop_size = strategy.popsize
        self._key = key
        self._state = strategy.init(k_init, x0, sigma0, params)
        self._population: Array | None = None

    def ask(self) -> Array:
        """The population to evaluate, ``(pop_size, num_params)``."""
        self._key, population, self._state = _ask(self.strategy, self._key, self._state)
        self._population = population
        return population

    def tell(self, fitness: Any) -> None:
        """Report the fitness (higher is better, EvoJAX's convention) of the last ``ask``."""
        if self._population is None:
            raise RuntimeError("tell() needs a population: call ask() first")
        fitness = jnp.asarray(fitness)
        if fitness.shape != (self.pop_size,):
            raise ValueError(f"fitness must have shape ({self.pop_size},), got {fitness.shape}")
        self._state = _tell(self.strategy, self._state, self._population, fitness)

    @property
    def best_params(self) -> Array:
        """The distribution's mean: the solution the strategy trains."""
        return self._state.mean

    @best_params.setter
    def best_params(self, params: Any) -> None:
        self._state = self._state._replace(mean=jnp.asarray(params, self._state.mean.dtype))

    @property
    def best_x(self) -> Array:
        """The best point sampled so far."""
        return self._state.best_x

    @property
    def state(self) -> Any:
        """The strategy state (read only; use `load_state` to replace it)."""
        return self._state

    def save_state(self) -> dict[str, Any]:
        """The whole state and key (a pytree of arrays)."""
        return {"state": self._state, "key": self._key}

    def load_state(self, saved_state: dict[str, Any]) -> None:
        """Continue from what `save_state` returned."""
        self._state, self._key = saved_state["state"], saved_state["key"]
        self._population = None


def evojax_solver(
    strategy: Strategy,
    *,
    x0: Any = None,
    sigma0: float = 0.1,
    seed: int = 0,
    params: Any = None,
) -> Any:
    """Wrap `strategy` as an EvoJAX ``NEAlgorithm`` (needs the ``evojax`` package).

    Args:
      strategy: any strategy of this library, e.g. ``evojax_cma.open_es(n, 64)``.
      x0: the initial parameters (default zeros, as EvoJAX's solvers start).
      sigma0: the initial step size.
      seed: the PRNG seed of sampling.
      params: the strategy's hyperparameters (default: its defaults).

    Returns:
      An object with ``pop_size``, ``ask()``, ``tell(fitness)``, ``best_params`` and
      ``save_state``/``load_state``; an instance of ``evojax.algo.NEAlgorithm``.
    """
    try:
        from evojax.algo.base import NEAlgorithm
    except ImportError as exc:
        raise ImportError("evojax_solver needs EvoJAX: pip install evojax") from exc

    class EvoJaxSolver(_Solver, NEAlgorithm):
        """An evojax_cma strategy behind EvoJAX's ``NEAlgorithm`` interface."""

    return EvoJaxSolver(strategy, x0, sigma0, seed, params)


__all__ = ["evojax_solver"]
