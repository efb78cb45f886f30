"""OpenAI-ES and variational optimisation: estimator, sigma adaptation, chunking, sweeps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import evojax_cma as ec
from evojax_cma.problems import sphere

A_DIAG = jnp.arange(1.0, 6.0)
B_VEC = jnp.array([1.0, -2.0, 0.5, 0.0, 3.0])


def quadratic(x):
    return 0.5 * jnp.sum(A_DIAG * x**2) + jnp.sum(B_VEC * x)


def _gradient_estimates(antithetic, reps=4000, lam=20, sigma=0.1):
    # With shaping="raw" and SGD at learning rate 1, one tell moves the mean by exactly -g.
    es = ec.open_es(
        5, lam, optimizer=optax.sgd, learning_rate=1.0, shaping="raw", antithetic=antithetic
    )
    mean = jnp.ones(5)
    state = es.init(None, mean, sigma)

    def one(key):
        x, s = es.ask(key, state)
        return mean - es.tell(s, x, jax.vmap(quadratic)(x)).mean

    return np.asarray(jax.vmap(one)(jax.random.split(jax.random.key(0), reps)))


def test_open_es_estimator_is_unbiased_and_antithetic_lowers_variance():
    # For a quadratic the Gaussian-smoothed gradient equals the gradient A m + b. Tolerance:
    # 4 standard errors of the mean of 4000 estimates per coordinate.
    true = np.asarray(A_DIAG * 1.0 + B_VEC)
    plain, anti = _gradient_estimates(False), _gradient_estimates(True)
    for g in (plain, anti):
        se = g.std(axis=0) / np.sqrt(len(g))
        assert np.all(np.abs(g.mean(axis=0) - true) < 4 * se + 1e-12), (g.mean(0), true, se)
    # antithetic pairs cancel f(m) and the curvature term: far lower variance
    assert anti.var(axis=0).sum() < 0.1 * plain.var(axis=0).sum()


def test_variational_sigma_shrinks_at_a_minimum_and_grows_on_a_plateau():
    es = ec.variational(3, 40, learning_rate=0.05, sigma_learning_rate=0.05)

    def run(f, x0, gens=40):
        state = es.init(None, x0, 0.5)
        for g in range(gens):
            x, state = es.ask(jax.random.key(g), state)
            state = es.tell(state, x, jax.vmap(f)(x))
        return state

    at_min = run(sphere, jnp.zeros(3))
    assert np.all(np.asarray(at_min.sigma) < 0.5 * 0.5)

    # Flat (f = 2) except towards x_0 = 3: only the tails of the samples see improvement.
    def plateau(x):
        return jnp.minimum(jnp.abs(x[0] - 3.0), 2.0)

    on_plateau = run(plateau, jnp.zeros(3), gens=15)
    assert float(on_plateau.sigma[0]) > 0.5 * 1.5


def fenced_well(x):
    """The background article's 1-D example: a narrow deep well behind a ridge on a bowl."""
    a = jnp.abs(x[0])
    ridge = jnp.maximum(0.0, 1.0 - jnp.abs(a - 0.8) / 0.6)
    return 0.1 * a**2 + ridge - 1.0 * (a < 0.05)


@pytest.mark.parametrize("x0", [3.0, -3.0])
def test_learned_sigma_finds_the_fenced_well_where_fixed_small_sigma_does_not(x0):
    # Both use Adam at learning rate 0.05 and popsize 50 for 1000 generations, 10 seeds.
    # Variational optimisation starts wide (sigma0 = 2) and learns sigma; OpenAI-ES keeps
    # sigma = 0.05 and stops at the outer foot of the ridge. Measured: 10/10 vs 0/10.
    opts = dict(
        maxiter=1000, tolfun=0.0, tolfunhist=0.0, tolflatfitness=1e9, tolstagnation=0, tolx=0.0
    )
    keys = jax.random.split(jax.random.key(0), 10)

    def successes(es, sigma0):
        res = jax.jit(
            jax.vmap(
                lambda k: ec.minimize(es, fenced_well, k, jnp.array([x0]), sigma0, options=opts)
            )
        )(keys)
        return int(np.sum(np.abs(np.asarray(res.state.mean[:, 0])) < 0.05))

    vo = successes(ec.variational(1, 50, learning_rate=0.05, sigma_learning_rate=0.005), 2.0)
    oes = successes(ec.open_es(1, 50, learning_rate=0.05), 0.05)
    assert vo >= 8 and oes <= 1, (vo, oes)


@pytest.mark.parametrize("make", [ec.open_es, ec.variational], ids=["open_es", "variational"])
@pytest.mark.parametrize("batched", [False, True])
def test_chunked_run_equals_unchunked(make, batched):
    es = make(20, 40, chunk_size=8, learning_rate=0.05)
    fn = (lambda X: jnp.sum(X**2, axis=1)) if batched else sphere
    args = (es, fn, jax.random.key(5), jnp.ones(20), 0.3)
    opts = {"maxiter": 40}
    full = ec.minimize(*args, options=opts, batched=batched)
    chunked = ec.minimize(*args, options=opts, batched=batched, chunked=True)
    assert int(chunked.state.generation) == int(full.state.generation) == 40
    for a, b in [
        (full.state.mean, chunked.state.mean),
        (full.state.sigma, chunked.state.sigma),
        (full.state.best_f, chunked.state.best_f),
    ]:
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-13)


def test_ask_is_the_concatenation_of_its_chunks():
    es = ec.open_es(7, 12, chunk_size=4)
    state = es.init(None, jnp.zeros(7), 1.0)
    key = jax.random.key(3)
    x, _ = es.ask(key, state)
    chunks = jnp.concatenate([es.ask_chunk(key, state, c) for c in range(3)])
    np.testing.assert_array_equal(np.asarray(x), np.asarray(chunks))
    # antithetic: pairs (e, -e) on neighbouring rows, so that sharded rows keep their pairs
    np.testing.assert_array_equal(np.asarray(x[0::2]), -np.asarray(x[1::2]))


def test_learning_rate_by_sigma0_sweep_is_one_vmap():
    es = ec.open_es(10, 20)
    lrs = jnp.array([0.01, 0.03, 0.1])
    sigmas = jnp.array([0.05, 0.2])
    lr_grid, s_grid = (a.ravel() for a in jnp.meshgrid(lrs, sigmas, indexing="ij"))
    base = es.default_params()
    params = base._replace(optimizer={**base.optimizer, "learning_rate": lr_grid})
    in_axes = (
        None,
        None,
        None,
        None,
        0,
        ec.OpenESParams(
            {k: (0 if k == "learning_rate" else None) for k in base.optimizer}, None, None, None
        ),
    )

    def run(strategy, fn, key, x0, sigma0, params):
        return ec.minimize(strategy, fn, key, x0, sigma0, params, options={"maxiter": 30})

    sweep = jax.vmap(run, in_axes=in_axes)(
        es, sphere, jax.random.key(0), jnp.ones(10), s_grid, params
    )
    for i in (0, 4):
        p_i = base._replace(optimizer={**base.optimizer, "learning_rate": lr_grid[i]})
        single = run(es, sphere, jax.random.key(0), jnp.ones(10), s_grid[i], p_i)
        np.testing.assert_allclose(
            np.asarray(sweep.state.mean[i]), np.asarray(single.state.mean), rtol=1e-10
        )
    assert len(set(np.round(np.asarray(sweep.state.best_f), 12))) == 6  # six distinct runs
