"""Neuroevolution tasks: small hashable values with ``init_params``, ``loss`` and ``score``.

Shipped, pure JAX and offline:

* `DigitsMLP`: an MLP classifier of scikit-learn's bundled 8x8 digits (UCI optical
  recognition of handwritten digits, Alpaydin and Kaynak 1998; no download), minibatch
  cross entropy or the non-differentiable 0-1 error as loss, held-out accuracy as score.
  Needs scikit-learn.
* `GymnaxControl`: MLP policies on gymnax's CartPole-v1, Acrobot-v1, MountainCar-v0,
  Pendulum-v1 and MountainCarContinuous-v0 (R. T. Lange, gymnax: A JAX-based
  Reinforcement Learning Environment Library, 2022); loss = minus the mean return of
  ``n_repeats`` episodes, score = mean return of ``n_test_episodes``. Needs gymnax.
* `DeceptiveMaze`: a point agent with an MLP policy and a U-shaped trap between start
  and goal (the deceptive maze of Lehman and Stanley 2011, as NSR-ES is shown on in
  Conti et al. 2018); loss = final distance to the goal, ``behavior()`` = the final
  position, for `evojax_cma.nsr_es`. No dependency.

The two optional dependencies come with ``pip install 'evojax_cma[tasks]'``.

A task is any hashable value with ``name``, ``higher_is_better``, ``init_params(key)``,
``loss(params, key)`` (minimised) and ``score(params, key)``; `check_task` checks one
abstractly and returns the parameters' `evojax_cma.pytree.ParamSpec`. Training flattens
the parameters with that spec and hands the strategy a keyed objective of vectors,
`task_objective` (``on_pytree`` of the loss, equal for equal tasks: no recompilation).

Examples:
  A task of your own, in a few lines (a frozen dataclass: equal settings, equal tasks):

  >>> import dataclasses, jax, jax.numpy as jnp, evojax_cma as ec
  >>> from evojax_cma.tasks import check_task, task_objective
  >>> @dataclasses.dataclass(frozen=True)
  ... class NoisyRegression:
  ...     name: str = "noisy_regression"
  ...     higher_is_better: bool = False
  ...     def init_params(self, key):
  ...         return {"w": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}
  ...     def loss(self, params, key):
  ...         x = jax.random.normal(key, (32, 3), jnp.float32)
  ...         y = x @ jnp.array([1.0, -2.0, 0.5], jnp.float32) + 0.3
  ...         return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)
  ...     def score(self, params, key):
  ...         return self.loss(params, key)
  >>> task = NoisyRegression()
  >>> spec = check_task(task)
  >>> x0 = spec.ravel(task.init_params(jax.random.key(0)))
  >>> res = ec.minimize(ec.open_es(spec.size, 20, learning_rate=0.05),
  ...                   task_objective(task, spec), jax.random.key(1), x0, 0.1,
  ...                   options={"maxiter": 200}, keyed=True)
  >>> params = spec.unravel(res.state.mean)
  >>> bool(task.score(params, jax.random.key(2)) < 0.05)
  True
"""

from evojax_cma.tasks.base import (
    Task,
    TaskMethod,
    check_task,
    mlp_apply,
    mlp_init,
    task_objective,
)
from evojax_cma.tasks.control import ENV_NAMES, GymnaxControl
from evojax_cma.tasks.maze import U_TRAP, DeceptiveMaze
from evojax_cma.tasks.supervised import OBJECTIVES, DigitsMLP

__all__ = [
    "ENV_NAMES",
    "OBJECTIVES",
    "U_TRAP",
    "DeceptiveMaze",
    "DigitsMLP",
    "GymnaxControl",
    "Task",
    "TaskMethod",
    "check_task",
    "mlp_apply",
    "mlp_init",
    "task_objective",
]
