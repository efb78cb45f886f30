"""A deceptive maze: a point agent, an MLP policy, and a U-shaped trap before the goal.

The deceptive maze of novelty search (J. Lehman and K. O. Stanley. Abandoning Objectives:
Evolution Through the Search for Novelty Alone. Evolutionary Computation 19(2), 2011), in
the simple form of the trap NSR-ES is shown on (E. Conti et al. Improving Exploration in
Evolution Strategies for Deep Reinforcement Learning via a Population of Novelty-Seeking
Agents. NeurIPS 2018, arXiv:1712.06560, ``[CMS18]``: a humanoid facing a U-shaped wall,
its final (x, y) position as the behaviour): the fitness is the distance of the agent's
final position to the goal, and a U-shaped wall opening towards the start stands between
the start and the goal, so that the policies which reduce that distance run into the cup
and stop at its bottom, a local optimum. Reaching the goal means first moving away from
it, around the cup.

Mechanics, all in JAX (``lax.scan`` over the steps, deterministic, ``jit``/``vmap``-able):

* The agent at ``p`` sees ``(p / obs_scale, t / steps)`` (its position, scaled by the
  arena's largest coordinate, and the elapsed fraction of the episode). The policy's
  outputs go through ``tanh``: a command in ``[-1, 1]^2`` scaled by ``speed`` is the step
  (a bounded 2-D velocity, one unit of time per step).
* Walls are axis-aligned boxes. A step moves along x, then along y; a move that would end
  strictly inside a box stops at the box's face (the agent slides along walls, as a
  wheeled robot does). Boxes are more than ``speed`` thick, so no step jumps over one.
  The arena's border clips the position.
* ``loss`` = ``score`` = the distance of the final position to the goal (minimised; the
  key is accepted and ignored). `final_position` is the behaviour characterisation, as
  in [CMS18]; `behavior` gives it as a function of the flat parameters, for
  ``evojax_cma.nsr_es(n, popsize, task.behavior())``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.typing import ArrayLike

from evojax_cma.pytree import OnPytree, ParamSpec, on_pytree
from evojax_cma.tasks.base import (
    TaskMethod,
    check_dtype,
    check_hidden,
    check_task,
    mlp_apply,
    mlp_init,
)

Box = tuple[float, float, float, float]
"""An axis-aligned wall ``(x_low, y_low, x_high, y_high)``."""

U_TRAP: tuple[Box, ...] = (
    (-1.5, 1.5, 1.5, 1.8),  # the cup's bottom, facing the start: where greed ends
    (-1.5, 0.5, -1.2, 1.8),  # its left arm
    (1.2, 0.5, 1.5, 1.8),  # its right arm
)
"""The default walls: a cup opening downwards, towards the start at (0, 0); the goal is
at (0, 3) behind it, and the greedy dead end at (0, 1.5) is 1.5 from the goal."""


@dataclasses.dataclass(frozen=True)
class DeceptiveMaze:
    """A point agent driven by an MLP policy past a U-shaped trap; loss = final distance.

    Attributes:
      hidden: hidden layer widths (tanh) of the policy ``(x, y, t) -> command``.
      steps: steps per episode, >= 1.
      speed: the largest move per step along each axis, > 0.
      start, goal: ``(x, y)`` inside the arena and outside every wall.
      walls: axis-aligned boxes ``(x_low, y_low, x_high, y_high)``, each more than
        `speed` thick along both axes.
      arena: ``(x_low, y_low, x_high, y_high)``, the border that clips the position.
      goal_radius: the final distance that counts as reaching the goal (`reached`).
      dtype: floating dtype of the policy parameters (and of the simulation).
    """

    hidden: tuple[int, ...] = (8,)
    steps: int = 50
    speed: float = 0.2
    start: tuple[float, float] = (0.0, 0.0)
    goal: tuple[float, float] = (0.0, 3.0)
    walls: tuple[Box, ...] = U_TRAP
    arena: Box = (-3.0, -1.0, 3.0, 4.0)
    goal_radius: float = 0.3
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", check_hidden(self.hidden))
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        steps = self.steps
        if not isinstance(steps, int | np.integer) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        object.__setattr__(self, "steps", int(steps))
        for name in ("speed", "goal_radius"):
            value = _real(name, getattr(self, name))
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
            object.__setattr__(self, name, value)
        arena = _box("arena", self.arena)
        if not isinstance(self.walls, tuple | list):
            raise ValueError(f"walls must be a tuple of boxes, got {self.walls!r}")
        walls = tuple(_box(f"walls[{i}]", w) for i, w in enumerate(self.walls))
        for i, w in enumerate(walls):
            if min(w[2] - w[0], w[3] - w[1]) <= self.speed:
                raise ValueError(
                    f"walls[{i}] = {w} must be more than speed = {self.speed} thick along "
                    "both axes (a step could jump over it)"
                )
        object.__setattr__(self, "arena", arena)
        object.__setattr__(self, "walls", walls)
        for name in ("start", "goal"):
            given = getattr(self, name)
            p = tuple(_real(name, v) for v in given) if isinstance(given, tuple | list) else ()
            if len(p) != 2:
                raise ValueError(f"{name} must be a point (x, y), got {given!r}")
            if not (arena[0] <= p[0] <= arena[2] and arena[1] <= p[1] <= arena[3]):
                raise ValueError(f"{name} = {p} must lie inside the arena {arena}")
            inside = [i for i, w in enumerate(walls) if w[0] < p[0] < w[2] and w[1] < p[1] < w[3]]
            if inside:
                raise ValueError(f"{name} = {p} lies inside walls[{inside[0]}]")
            object.__setattr__(self, name, p)

    @property
    def name(self) -> str:
        """``"deceptive_maze"``."""
        return "deceptive_maze"

    @property
    def higher_is_better(self) -> bool:
        """False: the score is a distance."""
        return False

    @property
    def obs_scale(self) -> float:
        """The observed position is the position divided by this: max |arena coordinate|."""
        return max(map(abs, self.arena))

    def init_params(self, key: Array) -> dict[str, Array]:
        """A policy that stands still: LeCun-normal hidden weights, a zero output layer.

        Every run starts with the agent at the start, so that the first search
        direction the fitness gives is the greedy one, straight into the trap.
        """
        params = mlp_init(key, (3, *self.hidden, 2), self.dtype)
        last = f"w{len(self.hidden)}"
        return {**params, last: jnp.zeros_like(params[last])}

    def simulate(self, command: Callable[[Array], Array]) -> Array:
        """The agent's positions ``(steps + 1, 2)`` under a policy, the start first.

        Args:
          command: maps an observation ``(x / obs_scale, y / obs_scale, t / steps)`` (shape
            ``(3,)``) to a command ``(2,)``, clipped to ``[-1, 1]`` and scaled by `speed`.
        """
        dtype = jnp.dtype(self.dtype)
        walls = jnp.asarray(self.walls, dtype).reshape(-1, 4)
        lo, hi = jnp.asarray(self.arena[:2], dtype), jnp.asarray(self.arena[2:], dtype)
        scale = jnp.asarray(self.obs_scale, dtype)

        def step(p: Array, t: Array) -> tuple[Array, Array]:
            obs = jnp.concatenate([p / scale, (t / self.steps)[None].astype(dtype)])
            v = self.speed * jnp.clip(jnp.asarray(command(obs), dtype).reshape(2), -1, 1)
            x = _move(p[0] + v[0], p[0], p[1], walls[:, 0], walls[:, 2], walls[:, 1], walls[:, 3])
            y = _move(p[1] + v[1], p[1], x, walls[:, 1], walls[:, 3], walls[:, 0], walls[:, 2])
            p = jnp.clip(jnp.stack([x, y]), lo, hi)
            return p, p

        p0 = jnp.asarray(self.start, dtype)
        _, path = lax.scan(step, p0, jnp.arange(self.steps, dtype=dtype))
        return jnp.concatenate([p0[None], path])

    def trajectory(self, params: dict[str, Array]) -> Array:
        """The positions ``(steps + 1, 2)`` under the MLP policy `params`."""
        return self.simulate(lambda obs: jnp.tanh(mlp_apply(params, obs)))

    def final_position(self, params: dict[str, Array]) -> Array:
        """Where the agent ends, ``(2,)``: the behaviour characterisation ([CMS18])."""
        return self.trajectory(params)[-1]

    def distance(self, params: dict[str, Array]) -> Array:
        """The distance of the final position to the goal."""
        return jnp.linalg.norm(self.final_position(params) - jnp.asarray(self.goal, self.dtype))

    def loss(self, params: dict[str, Array], key: Array) -> Array:
        """The final distance to the goal (deterministic: `key` is ignored)."""
        del key
        return self.distance(params)

    def score(self, params: dict[str, Array], key: Array) -> Array:
        """The final distance to the goal, as `loss`."""
        return self.loss(params, key)

    def reached(self, distance: ArrayLike) -> Array:
        """Whether a final `distance` (from `loss`) is within ``goal_radius`` of the goal."""
        return jnp.asarray(distance) < self.goal_radius

    def behavior(self, spec: ParamSpec | None = None) -> OnPytree:
        """`final_position` as a function of flat parameters ``(n,) -> (2,)``, for NSR-ES.

        A value (equal for equal tasks, so no recompilation), usable as
        ``evojax_cma.nsr_es(spec.size, popsize, task.behavior(spec))``.

        Args:
          spec: the parameters' layout (default: ``check_task(self)``).
        """
        spec = check_task(self) if spec is None else spec
        return on_pytree(TaskMethod(self, "final_position"), spec)


def _move(
    to: Array, at: Array, across: Array, low: Array, high: Array, a_low: Array, a_high: Array
) -> Array:
    """A move along one axis from `at` to `to`, stopped at the first wall face it enters.

    ``low, high`` are the walls' extents along the axis of motion and ``a_low, a_high``
    across it; the agent is at `across` on the other axis. A wall is entered when `to`
    lies strictly inside it; the agent then stops at the face it came through (the
    nearest such face when walls overlap).
    """
    hit = (low < to) & (to < high) & (a_low < across) & (across < a_high)
    forward = to > at
    face = jnp.where(forward, low, high)
    stop_fwd = jnp.min(jnp.where(hit, face, jnp.inf), initial=jnp.inf)
    stop_back = jnp.max(jnp.where(hit, face, -jnp.inf), initial=-jnp.inf)
    return jnp.where(forward, jnp.minimum(to, stop_fwd), jnp.maximum(to, stop_back))


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _box(name: str, box: object) -> Box:
    values = tuple(box) if isinstance(box, tuple | list) else ()
    if len(values) != 4:
        raise ValueError(f"{name} must be a box (x_low, y_low, x_high, y_high), got {box!r}")
    x0, y0, x1, y1 = (_real(name, v) for v in values)
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"{name} = {box} must have x_low < x_high and y_low < y_high")
    return (x0, y0, x1, y1)
