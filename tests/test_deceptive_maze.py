"""The deceptive maze task (Lehman and Stanley 2011), and NSR-ES escaping its trap.

The mechanics tests use hand-written policies whose outcome follows from geometry (the
greedy policy must stop at the cup's bottom, 1.5 from the goal; a policy going around the
cup must reach the goal) and compare vmapped with looped rollouts. The statistical test
compares NSR-ES with OpenAI-ES at equal settings over several seeds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.tasks import U_TRAP, DeceptiveMaze, check_task, task_objective

TASK = DeceptiveMaze()


def toward_goal(obs):
    """The greedy policy: straight at the goal, at full speed."""
    d = jnp.asarray(TASK.goal, obs.dtype) - obs[:2] * TASK.obs_scale
    return d / jnp.maximum(jnp.linalg.norm(d), 1e-9)


def around_the_cup(obs):
    """Left past the cup's arm (x < -1.9), up past its bottom (y > 2), then to the goal."""
    x, y = obs[0] * TASK.obs_scale, obs[1] * TASK.obs_scale
    left, up = jnp.array([-1.0, 0.0], obs.dtype), jnp.array([0.0, 1.0], obs.dtype)
    return jnp.where(y > 2.0, toward_goal(obs), jnp.where(x > -1.9, left, up))


def inside_a_wall(path, walls=U_TRAP):
    """Whether a position lies strictly inside a wall, in the path's precision (float32)."""
    p = np.asarray(path)[:, None]
    w = np.asarray(walls, p.dtype)[None]
    inside = (w[..., 0] < p[..., 0]) & (p[..., 0] < w[..., 2])
    inside &= (w[..., 1] < p[..., 1]) & (p[..., 1] < w[..., 3])
    return inside.any()


def test_the_wall_stops_the_greedy_policy_and_a_detour_reaches_the_goal():
    greedy = np.asarray(TASK.simulate(toward_goal))
    assert greedy.shape == (TASK.steps + 1, 2)
    np.testing.assert_allclose(greedy[0], TASK.start)
    # straight up from (0, 0): stopped at the cup's bottom face y = 1.5, 1.5 from the goal
    np.testing.assert_allclose(greedy[-1], [0.0, 1.5], atol=1e-6)
    detour = np.asarray(TASK.simulate(around_the_cup))
    assert np.linalg.norm(detour[-1] - np.asarray(TASK.goal)) < TASK.goal_radius
    assert detour[:, 0].min() < -1.5  # it did go around the arm
    for path in (greedy, detour):
        assert not inside_a_wall(path)
        assert np.abs(np.diff(path, axis=0)).max() <= TASK.speed + 1e-6
    # sliding: pushing up and right along the bottom face ends in the cup's corner
    corner = np.asarray(TASK.simulate(lambda obs: jnp.array([0.5, 1.0], obs.dtype)))
    np.testing.assert_allclose(corner[-1], [1.2, 1.5], atol=1e-6)
    # the arena's border clips: going left forever ends at x = -3
    border = TASK.simulate(lambda obs: jnp.array([-1.0, 0.0], obs.dtype))
    np.testing.assert_allclose(np.asarray(border[-1]), [-3.0, 0.0], atol=1e-6)


def test_mlp_policies_vmapped_equal_looped_and_never_enter_a_wall():
    spec = check_task(TASK)
    # random policies with a live output layer (init_params' stands still)
    xs = 2.0 * jax.random.normal(jax.random.key(1), (6, spec.size), jnp.float32)
    objective = task_objective(TASK, spec)
    key = jax.random.key(0)
    batched = np.asarray(jax.jit(jax.vmap(objective, in_axes=(0, None)))(xs, key))
    looped = np.array([float(objective(x, key)) for x in xs])
    np.testing.assert_allclose(batched, looped, rtol=1e-6)
    behavior = TASK.behavior(spec)
    ends = np.asarray(jax.vmap(behavior)(xs))
    np.testing.assert_allclose(
        np.linalg.norm(ends - np.asarray(TASK.goal), axis=1), looped, rtol=1e-6
    )
    paths = jax.vmap(lambda x: TASK.trajectory(spec.unravel(x)))(xs)
    np.testing.assert_allclose(np.asarray(paths[:, -1]), ends, rtol=1e-6)
    assert not any(inside_a_wall(p) for p in np.asarray(paths))
    assert len({tuple(np.round(e, 3)) for e in ends}) >= 4  # they do differ
    # the initial policy stands still; equal tasks give equal behaviours (one compilation)
    x0 = spec.ravel(TASK.init_params(jax.random.key(2)))
    np.testing.assert_allclose(np.asarray(behavior(x0)), TASK.start)
    assert behavior == DeceptiveMaze().behavior() and behavior != DeceptiveMaze(steps=9).behavior()


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"walls\[0\].*thick"):
        DeceptiveMaze(walls=((0.0, 1.0, 0.1, 2.0),))
    with pytest.raises(ValueError, match=r"start .* inside walls\[0\]"):
        DeceptiveMaze(start=(0.0, 1.6))
    with pytest.raises(ValueError, match="goal .* inside the arena"):
        DeceptiveMaze(goal=(0.0, 9.0))
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        DeceptiveMaze(steps=0)
    with pytest.raises(ValueError, match="speed must be > 0"):
        DeceptiveMaze(speed=-0.1)
    with pytest.raises(TypeError, match="goal_radius must be a real number"):
        DeceptiveMaze(goal_radius="0.3")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="arena must be a box"):
        DeceptiveMaze(arena=(0.0, 1.0))  # pyright: ignore[reportArgumentType]


def test_nsr_es_escapes_the_maze_where_openai_es_stays_trapped():
    # 500 generations, λ = 20, σ = 0.3, Adam at 0.05, 8 seeds, each with its own initial
    # hidden layer (the output layer is zero: every run starts standing at the start).
    # Success: the best policy evaluated ends within goal_radius = 0.3 of the goal (the
    # trap's dead end is 1.5 away). NSR-ES (w = 1/2, k = 10, an archive of 200) must
    # succeed on >= 6 of 8 seeds and OpenAI-ES with the same settings on <= 2 of 8.
    # Measured here: 7/8 vs 0/8; with four other draws of the 8 initial policies, NSR-ES
    # 8, 7, 7, 6 of 8 and OpenAI-ES 0, 0, 0, 1 (and 8/8 vs 3/8 with λ = 40, 300 gen.).
    # The policies are float32 under x64 (the test configuration): NSR-ES must keep the
    # state's dtype (its novelty utilities once came out float64 and broke the loop).
    spec = check_task(TASK)
    objective = task_objective(TASK, spec)
    seeds = 8
    x0 = jax.vmap(lambda k: spec.ravel(TASK.init_params(k)))(
        jax.random.split(jax.random.key(1), seeds)
    )
    keys = jax.random.split(jax.random.key(0), seeds)

    def best_f(es):
        def run(key, x):
            return ec.minimize(es, objective, key, x, 0.3, generations=500, keyed=True)

        return np.asarray(jax.jit(jax.vmap(run))(keys, x0).state.best_f)

    nsr_es = ec.nsr_es(spec.size, 20, TASK.behavior(spec), archive_size=200, learning_rate=0.05)
    nsr = best_f(nsr_es)
    oes = best_f(ec.open_es(spec.size, 20, learning_rate=0.05))
    assert np.sum(TASK.reached(nsr)) >= 6 and np.sum(TASK.reached(oes)) <= 2, (nsr, oes)
    # OpenAI-ES's failures are the trap: it never gets past the cup's bottom (distance 1.5)
    # far enough to come near the goal
    assert np.all(np.asarray(TASK.reached(oes)) | (oes > 0.5)), oes
