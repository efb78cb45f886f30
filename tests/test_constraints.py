"""Inequality constraints via the augmented Lagrangian, against pycma's implementation."""

import warnings

import cma
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.transforms.constraints import al_fitness, al_generation, init_al


def _ring(x):  # pycma's documented example: x[0]^2 >= 1
    return jnp.atleast_1d(1.0 - x[0] ** 2)


def _at_least_one(x):  # x >= 1 coordinate-wise
    return 1.0 - x


PROBLEMS = {
    # name: (constraints, n, x0, optimum up to the sign of x[0], constrained minimum of sphere)
    "ring": (_ring, 4, 1.0, np.r_[1.0, np.zeros(3)], 1.0),
    "ones": (_at_least_one, 3, 2.0, np.ones(3), 3.0),
}


def _sphere_np(x):
    return float(np.sum(np.asarray(x) ** 2))


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_coefficients_match_pycma_on_the_same_populations(name):
    """Drive pycma's ConstrainedFitnessAL and ours with the same candidates."""
    g_jax, n, x0, _, _ = PROBLEMS[name]

    def g_np(x):
        return list(np.asarray(g_jax(jnp.asarray(x))))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cma.ConstrainedFitnessAL(_sphere_np, g_np, dimension=n, logging=0, archives=False)
        es = cma.CMAEvolutionStrategy(n * [x0], 0.5, {"verbose": -9, "seed": 3})
    m = len(g_np(np.zeros(n)))
    al = init_al(m, n, jnp.float64)
    fitness = jax.jit(al_fitness)
    adapt = jax.jit(al_generation, static_argnums=(4, 5))
    compared = 0
    for _ in range(120):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X = es.ask()
            H = np.asarray([ref(x) for x in X])
            F, G = np.asarray(ref.F), np.asarray(ref.G)
            es.tell(X, list(H))
            ref.update(es)
        h, al = fitness(al, jnp.asarray(F), jnp.asarray(G), len(X))
        np.testing.assert_allclose(h, H, rtol=1e-12, atol=1e-300)
        al = adapt(al, jnp.asarray(F), jnp.asarray(G), h, len(X), n)
        if ref.al.lam is None:
            continue
        np.testing.assert_allclose(al.multipliers, ref.al.lam, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(al.mu, ref.al.mu, rtol=1e-12, atol=1e-300)
        np.testing.assert_array_equal(al.initialized, ref.al._initialized)
        compared += 1
    assert compared > 100
    assert np.all(np.asarray(al.mu) > 0)  # the comparison covered adapted coefficients


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_jitted_runs_reach_the_constrained_optimum(name):
    """Five vmapped seeds: the final mean is feasible to 1e-6 and f to 1e-6 of the optimum."""
    g, n, x0, optimum, fmin = PROBLEMS[name]
    es = ec.cma_es(n)
    runs = jax.jit(
        jax.vmap(
            lambda k: ec.minimize(
                es,
                lambda x: jnp.sum(x**2),
                k,
                jnp.full(n, x0),
                0.5,
                options={"maxfevals": 4000 * n},
                constraints=g,
            )
        )
    )(jax.random.split(jax.random.key(1), 5))
    mean = np.asarray(runs.state.mean)
    violation = np.max(np.asarray(jax.vmap(g)(jnp.asarray(mean))), axis=1)
    assert np.all(violation < 1e-6), violation
    np.testing.assert_allclose(np.abs(mean), np.broadcast_to(optimum, mean.shape), atol=1e-5)
    np.testing.assert_allclose(np.sum(mean**2, axis=1), fmin, rtol=1e-6)
    # best_x is the best feasible evaluated point
    assert np.all(np.max(np.asarray(jax.vmap(g)(runs.best_x)), axis=1) <= 0)
    np.testing.assert_allclose(runs.best_f, fmin, rtol=1e-4)


def test_fmin_with_constraints_like_fmin_con2():
    """Host driver vs ``cma.fmin_con2`` on the ring example (default termination).

    Both end within 1e-5 of the constrained optimum, with median evaluations over 5 seeds
    each within a factor 1.5.
    """
    n = 3

    def g(x):
        return [1.0 - x[0] ** 2]

    ours, theirs = [], []
    for seed in range(5):
        x, res = ec.fmin(_sphere_np, n * [1.0], 0.5, {"seed": seed, "verbose": 0}, constraints=g)
        assert g(x)[0] < 1e-5 and abs(_sphere_np(x) - 1.0) < 1e-5, (x, res.stop)
        assert 1.0 <= res.fbest <= 1.0 + 1e-5  # the best feasible f evaluated
        ours.append(res.evals)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xr, esr = cma.fmin_con2(
                _sphere_np, n * [1.0], 0.5, g, options={"seed": seed + 1, "verbose": -9}
            )
        assert g(xr)[0] < 1e-5 and abs(_sphere_np(xr) - 1.0) < 1e-5
        theirs.append(esr.countevals)
    ratio = np.median(ours) / np.median(theirs)
    assert 1 / 1.5 < ratio < 1.5, (ours, theirs)


def test_batched_constraints_and_restarts():
    """A batched objective with batched constraints, through minimize_restarts."""

    def f(X):
        return jnp.sum(X**2, axis=1)

    def g(X):
        return 1.0 - X

    res = ec.minimize_restarts(
        f,
        jax.random.key(0),
        jnp.full(3, 2.0),
        0.5,
        {"maxfevals": 2e4},
        restarts=1,
        batched=True,
        constraints=g,
    )
    np.testing.assert_allclose(res.state.mean, 1.0, atol=1e-5)
    np.testing.assert_allclose(res.best_f, 3.0, rtol=1e-4)


def test_nan_constraint_values_never_corrupt_the_state():
    """Rule: a candidate with a NaN g is told NaN (ranks last) and skipped by the AL."""

    def g(x):
        return jnp.atleast_1d(jnp.where(x[1] > 1.5, jnp.nan, 1.0 - x[0] ** 2))

    res = ec.minimize(
        ec.cma_es(4),
        lambda x: jnp.sum(x**2),
        jax.random.key(0),
        jnp.ones(4),
        1.0,
        options={"maxfevals": 1.2e4},
        constraints=g,
    )
    assert np.all(np.isfinite(res.state.mean)) and np.isfinite(res.state.sigma)
    np.testing.assert_allclose(abs(res.state.mean[0]), 1.0, atol=1e-5)


def test_bad_constraints_raise_before_tracing():
    es = ec.cma_es(3)
    f = lambda x: jnp.sum(x**2)  # noqa: E731
    key, x0 = jax.random.key(0), jnp.ones(3)
    with pytest.raises(TypeError, match="constraints must be callable"):
        ec.minimize(es, f, key, x0, 1.0, constraints=3.0)
    with pytest.raises(ValueError, match=r"constraints must return shape \(m,\)"):
        ec.minimize(es, f, key, x0, 1.0, constraints=lambda x: jnp.outer(x, x))
    with pytest.raises(ValueError, match="at least one"):
        ec.minimize(es, f, key, x0, 1.0, constraints=lambda x: x[:0])
    with pytest.raises(ValueError, match="non-finite values at x0"):
        ec.minimize(es, f, key, x0, 1.0, constraints=lambda x: jnp.log(x - 2.0))
    with pytest.raises(ValueError, match=r"shape \(popsize, m\)"):
        ec.minimize(es, lambda X: jnp.sum(X**2, 1), key, x0, 1.0, batched=True, constraints=_ring)
    with pytest.raises(ValueError, match="chunked=True works without"):
        ec.minimize(ec.open_es(4, 8), f, key, jnp.ones(4), 1.0, chunked=True, constraints=_ring)
    # host driver: checked at x0, then on every call
    with pytest.raises(ValueError, match="non-finite values at x0"):
        ec.fmin(_sphere_np, [1.0, 1.0], 0.5, {"verbose": 0}, constraints=lambda x: [np.nan])
    with pytest.raises(ValueError, match="must return a vector"):
        ec.fmin(_sphere_np, [1.0, 1.0], 0.5, {"verbose": 0}, constraints=lambda x: 1.0)
    calls = []

    def changes_shape(x):
        calls.append(1)
        return [1.0] if len(calls) == 1 else [1.0, 2.0]

    with pytest.raises(ValueError, match="constraints must return 1 values per point"):
        ec.fmin(_sphere_np, [1.0, 1.0], 0.5, {"verbose": 0}, constraints=changes_shape)
