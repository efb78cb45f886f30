"""NSR-ES (Conti et al. 2018): novelty against a ring-buffer archive, blended with fitness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.strategies.nsr_es import archive_add, novelty

GOAL = jnp.array([0.0, 4.0])


def trap(x):
    """A deceptive 2-D trap: distance to the goal at (0, 4), behind a wall.

    The wall (1 < y < 2, |x| < 2) between the start (0, 0) and the goal is worse than
    anything outside it and gets worse towards the goal, so that following the fitness
    leads to the local optimum at (0, 1) (f = 3) below the wall; the goal is reached only
    by first moving sideways, which the fitness punishes.
    """
    wall = (x[1] > 1.0) & (x[1] < 2.0) & (jnp.abs(x[0]) < 2.0)
    return jnp.where(wall, 10.0 + 10.0 * (x[1] - 1.0), jnp.linalg.norm(x - GOAL))


def position(x):
    """The behaviour: where the point agent ends, here the point itself."""
    return x


def test_nsr_es_escapes_a_deceptive_trap_where_openai_es_is_stuck():
    # 300 generations, λ = 20, σ = 0.1, Adam at 0.05, from (0, 0). Success: the best
    # point found is within 0.1 of the goal (the trap's optimum is at distance 3).
    # NSR-ES (w = 1/2, k = 10, an archive of 200) must succeed on >= 3 of its 4 seeds and
    # OpenAI-ES with the same settings on <= 1 of 5. Measured: 4/4 vs 0/5.
    keys = jax.random.split(jax.random.key(0), 5)

    def best_f(es, params=None):
        def run(k, p):
            return ec.minimize(es, trap, k, jnp.zeros(2), 0.1, p, generations=300)

        return jax.vmap(run)(keys, params)

    nsr = ec.nsr_es(2, 20, position, archive_size=200, learning_rate=0.05)
    # w is a traced params field: the last run's w = 1.5 is out of range, so that run
    # stops at once with `invalid_input` (and a state that is still the initial one)
    weights = jnp.array([0.5, 0.5, 0.5, 0.5, 1.5])
    res = best_f(nsr, jax.vmap(lambda w: nsr.default_params(fitness_weight=w))(weights))
    nsr_f = np.asarray(res.state.best_f)
    assert ec.stop_reasons(res.stop_flags[4]) == ["invalid_input"]
    assert np.all(np.isfinite(np.asarray(res.state.mean)))
    oes_f = np.asarray(best_f(ec.open_es(2, 20, learning_rate=0.05)).state.best_f)
    assert np.sum(nsr_f[:4] < 0.1) >= 3 and np.sum(oes_f < 0.1) <= 1, (nsr_f, oes_f)
    assert np.all(oes_f > 2.5), oes_f  # OpenAI-ES sits at the wall's foot


def test_novelty_is_the_mean_distance_to_the_k_nearest_archived_behaviours():
    rng = np.random.default_rng(0)
    archived = rng.normal(size=(13, 3))
    archive = ec.NoveltyArchive(jnp.zeros((8, 3)), jnp.zeros((), jnp.int32))
    for b in archived:  # 13 into a ring of 8: the last 8 remain
        archive = archive_add(archive, jnp.asarray(b))
    assert int(archive.count) == 13
    kept = archived[5:]
    np.testing.assert_allclose(
        np.sort(np.asarray(archive.behaviors), axis=0), np.sort(kept, axis=0)
    )
    queries = rng.normal(size=(6, 3))
    got = np.asarray(novelty(archive, jnp.asarray(queries), 3))
    dists = np.linalg.norm(queries[:, None] - kept[None], axis=-1)
    np.testing.assert_allclose(got, np.sort(dists, axis=1)[:, :3].mean(axis=1), rtol=1e-12)
    # fewer archived than k: the mean over those there are; a NaN behaviour is not
    # archived and has NaN novelty (ranked last)
    small = archive_add(ec.NoveltyArchive(jnp.zeros((8, 3)), jnp.zeros((), jnp.int32)), kept[0])
    small = archive_add(small, jnp.full(3, jnp.nan))
    assert int(small.count) == 1
    q = jnp.stack([jnp.asarray(queries[0]), jnp.full(3, jnp.nan)])
    nov = np.asarray(novelty(small, q, 3))
    np.testing.assert_allclose(nov[0], np.linalg.norm(queries[0] - kept[0]), rtol=1e-12)
    assert np.isnan(nov[1])


def test_fitness_weight_one_is_openai_es_and_the_archive_holds_the_means():
    args = (lambda x: jnp.sum((x - 1.0) ** 2), jax.random.key(3), jnp.zeros(3), 0.2)
    nsr = ec.nsr_es(3, 12, position, archive_size=8, fitness_weight=1.0, learning_rate=0.1)
    oes = ec.open_es(3, 12, learning_rate=0.1)
    a = ec.minimize(nsr, *args, generations=10)
    b = ec.minimize(oes, *args, generations=10)
    np.testing.assert_array_equal(np.asarray(a.state.mean), np.asarray(b.state.mean))
    archive = a.state.opt_state[1]
    assert int(archive.count) == 11  # x0 and one mean per generation, 8 kept
    assert np.any(np.all(np.isclose(np.asarray(archive.behaviors), a.state.mean), axis=1))


def test_chunked_run_equals_unchunked():
    es = ec.nsr_es(4, 16, jnp.sin, archive_size=30, neighbors=4, chunk_size=4)
    args = (es, trap_4d, jax.random.key(1), jnp.zeros(4), 0.2)
    full, chunked = (ec.minimize(*args, generations=15, chunked=c).state for c in (False, True))
    # the whole state, the archive included
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13), full, chunked
    )


def trap_4d(x):
    return trap(x[:2]) + jnp.sum(x[2:] ** 2)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="behavior must map a point"):
        ec.nsr_es(3, 10, lambda x: jnp.outer(x, x))
    with pytest.raises(ValueError, match="behavior must map a point"):
        ec.nsr_es(3, 10, lambda x: x > 0)
    with pytest.raises(TypeError, match="behavior must be a function"):
        ec.nsr_es(3, 10, None)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="fitness_weight must be >= 0 and <= 1"):
        ec.nsr_es(3, 10, position, fitness_weight=1.5)
    with pytest.raises(ValueError, match="archive_size"):
        ec.nsr_es(3, 10, position, archive_size=0)
    with pytest.raises(TypeError, match="unknown nsr_es option"):
        ec.nsr_es(3, 10, position, tolfunn=1e-3)
    with pytest.raises(ValueError, match="df must be finite and > 2"):
        ec.nsr_es(3, 10, position, perturbation="student_t", df=1.0)
    es = ec.nsr_es(3, 10, position)
    assert es == ec.nsr_es(3, 10, position) and es != ec.nsr_es(3, 10, jnp.tanh)
    with pytest.raises(ValueError, match="fitness_weight"):
        es.default_params(fitness_weight=-0.1)
