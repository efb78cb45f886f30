"""Control tasks: MLP policies on gymnax's classic-control environments.

Environments come from gymnax (R. T. Lange. gymnax: A JAX-based Reinforcement Learning
Environment Library, 2022, http://github.com/RobertTLange/gymnax), ports of OpenAI Gym's
classic control problems that step inside ``jit``/``vmap``. An episode is a ``lax.scan``
over the environment's ``max_steps_in_episode`` steps; rewards are summed up to and
including the first step that ends the episode (terminated or truncated), and masked after
it (gymnax resets automatically, the steps after the end are wasted but harmless). The
task's loss averages ``n_repeats`` such episodes, each with its own key split from the key
it is given, and negates the mean so that it is minimised.

Policies are small MLPs (a dict pytree of arrays, tanh hidden layers): a discrete action
is the argmax of the outputs, a continuous one ``low + (tanh(out) + 1) (high - low) / 2``
within the action box.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from evojax_cma.core import prng
from evojax_cma.tasks.base import check_dtype, check_hidden, mlp_apply, mlp_init, require

ENV_NAMES = (
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "Pendulum-v1",
    "MountainCarContinuous-v0",
)
"""The gymnax environments `GymnaxControl` supports (flat observations, a discrete action
or a box of continuous ones)."""


@dataclasses.dataclass(frozen=True)
class GymnaxControl:
    """Episode return of an MLP policy on a gymnax environment; loss = minus the mean return.

    Attributes:
      env_name: one of `ENV_NAMES`.
      hidden: hidden layer widths (tanh), e.g. ``(32,)``.
      n_repeats: episodes averaged by `loss`, each with its own key, >= 1.
      n_test_episodes: episodes averaged by `score`, >= 1.
      max_steps: episode length limit (default: the environment's own, e.g. 500 for
        CartPole-v1, 200 for Pendulum-v1).
      dtype: floating dtype of the policy parameters.
    """

    env_name: str = "CartPole-v1"
    hidden: tuple[int, ...] = (32,)
    n_repeats: int = 1
    n_test_episodes: int = 100
    max_steps: int | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        require("gymnax", "GymnaxControl")
        if self.env_name not in ENV_NAMES:
            raise ValueError(
                f"unknown env_name {self.env_name!r}; GymnaxControl supports {ENV_NAMES}"
            )
        object.__setattr__(self, "hidden", check_hidden(self.hidden))
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        for field in ("n_repeats", "n_test_episodes", "max_steps"):
            value = getattr(self, field)
            if field == "max_steps" and value is None:
                continue
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be an int >= 1, got {value!r}")
            object.__setattr__(self, field, int(value))
        self.env()  # build (and cache) the environment now, outside any trace

    @property
    def name(self) -> str:
        """The environment's name, e.g. ``"CartPole-v1"``."""
        return self.env_name

    @property
    def higher_is_better(self) -> bool:
        """True: the score is a mean return."""
        return True

    def env(self) -> tuple[Any, Any]:
        """The gymnax ``(environment, env_params)`` (cached; ``max_steps`` applied)."""
        return _make_env(self.env_name, self.max_steps)

    @property
    def episode_length(self) -> int:
        """Steps scanned per episode (the environment's ``max_steps_in_episode``)."""
        return int(self.env()[1].max_steps_in_episode)

    @property
    def obs_size(self) -> int:
        """Length of the (flat) observation vector."""
        env, env_params = self.env()
        return math.prod(env.observation_space(env_params).shape)

    @property
    def discrete(self) -> bool:
        """Whether actions are discrete (argmax policy) rather than a continuous box."""
        return hasattr(self.env()[0].action_space(self.env()[1]), "n")

    @property
    def action_size(self) -> int:
        """The number of discrete actions, or the size of the continuous action vector."""
        env, env_params = self.env()
        space = env.action_space(env_params)
        return int(space.n) if self.discrete else math.prod(space.shape)

    def init_params(self, key: Array) -> dict[str, Array]:
        """LeCun-normal policy weights ``obs -> hidden -> action outputs`` (`mlp_init`)."""
        return mlp_init(key, (self.obs_size, *self.hidden, self.action_size), self.dtype)

    def act(self, params: dict[str, Array], obs: Array) -> Array:
        """The policy's action for one observation (argmax, or tanh scaled to the box)."""
        out = mlp_apply(params, jnp.ravel(obs))
        if self.discrete:
            return jnp.argmax(out).astype(jnp.int32)
        env, env_params = self.env()
        space = env.action_space(env_params)
        low = jnp.broadcast_to(jnp.asarray(space.low, out.dtype), out.shape)
        high = jnp.broadcast_to(jnp.asarray(space.high, out.dtype), out.shape)
        action = low + (jnp.tanh(out) + 1) * (high - low) / 2
        # the environment's own precision (its state would otherwise change dtype)
        return action.reshape(space.shape).astype(jnp.result_type(obs))

    def episode_return(self, params: dict[str, Array], key: Array) -> Array:
        """The undiscounted return of one episode from the reset drawn with `key`."""
        env, env_params = self.env()
        k_reset, k_steps = prng.split(key)
        obs, state = env.reset(k_reset, env_params)
        dtype = jnp.dtype(self.dtype)

        def step(carry: tuple[Any, ...], k: Array) -> tuple[tuple[Any, ...], None]:
            obs, state, total, alive = carry
            out = env.step(k, state, self.act(params, obs), env_params)
            if len(out) == 6:  # gymnax >= 1.0: obs, state, reward, terminated, truncated, info
                obs, state, reward, terminated, truncated, _ = out
                done = jnp.logical_or(terminated, truncated)
            else:  # older gymnax: obs, state, reward, done, info
                obs, state, reward, done, _ = out
            total = total + alive * jnp.asarray(reward, dtype).reshape(())
            alive = alive * (1 - jnp.asarray(done, dtype).reshape(()))
            return (obs, state, total, alive), None

        keys = prng.split(k_steps, self.episode_length)
        carry = (obs, state, jnp.zeros((), dtype), jnp.ones((), dtype))
        (_, _, total, _), _ = lax.scan(step, carry, keys)
        return total

    def mean_return(self, params: dict[str, Array], key: Array, n_episodes: int) -> Array:
        """The mean return over `n_episodes` episodes with keys split from `key`."""
        keys = prng.split(key, n_episodes)
        return jnp.mean(jax.vmap(self.episode_return, in_axes=(None, 0))(params, keys))

    def loss(self, params: dict[str, Array], key: Array) -> Array:
        """Minus the mean return over ``n_repeats`` episodes drawn from `key`."""
        return -self.mean_return(params, key, self.n_repeats)

    def score(self, params: dict[str, Array], key: Array) -> Array:
        """The mean return over ``n_test_episodes`` episodes drawn from `key`."""
        return self.mean_return(params, key, self.n_test_episodes)


@functools.lru_cache(maxsize=16)
def _make_env(env_name: str, max_steps: int | None) -> tuple[Any, Any]:
    gymnax: Any = require("gymnax", "GymnaxControl")
    # Concrete even when first called inside a trace: the result is cached across traces.
    with jax.ensure_compile_time_eval():
        env, env_params = gymnax.make(env_name)
        if max_steps is not None:
            env_params = env_params.replace(max_steps_in_episode=max_steps)
    return env, env_params
