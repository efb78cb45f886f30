"""Each termination criterion fires where it should, with pycma's names and thresholds."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.problems import ellipsoid, linear, sphere

from reference_runs import pycma_runs


def _run(fn, n=5, x0=0.5, sigma0=0.3, popsize=None, **opts):
    es = ec.cma_es(n, popsize)
    res = ec.minimize(es, fn, jax.random.key(0), x0 * jnp.ones(n), sigma0, options=opts)
    return res, ec.stop_reasons(res.stop_flags)


def _pycma_stop(fn, n, x0, sigma0, popsize, **opts):
    import cma

    batch = jax.jit(jax.vmap(fn))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = cma.CMAEvolutionStrategy(
            n * [x0], sigma0, {"popsize": popsize, "verbose": -9, "seed": 3, **opts}
        )
        while not es.stop():
            X = es.ask()
            es.tell(X, list(np.asarray(batch(np.asarray(X)), dtype=float)))
    return es


def test_maxfevals_and_maxiter_count_like_pycma():
    res, why = _run(sphere, popsize=10, maxfevals=95)
    ref = _pycma_stop(sphere, 5, 0.5, 0.3, 10, maxfevals=95)
    assert why == ["maxfevals"] and "maxfevals" in ref.stop()
    assert int(res.state.evals) == ref.countevals == 100
    res, why = _run(sphere, popsize=10, maxiter=7)
    ref = _pycma_stop(sphere, 5, 0.5, 0.3, 10, maxiter=7)
    assert why == ["maxiter"] and "maxiter" in ref.stop()
    assert int(res.state.generation) == ref.countiter == 7


def test_constant_function_stops_like_pycma():
    res, why = _run(lambda x: jnp.asarray(1.0) + 0 * x[0], popsize=10)
    ref = _pycma_stop(lambda x: jnp.asarray(1.0) + 0 * x[0], 5, 0.5, 0.3, 10)
    assert set(why) == set(ref.stop()) == {"tolfun"}
    assert int(res.state.generation) == ref.countiter == 1


def test_flat_fitness_counter():
    # Flat in the best 75 % (f[0] == f[int(0.75 * 10)]) but not overall: tolflatfitness (1)
    # fires in the second consecutive flat iteration; tolfun does not (the range is large).
    es = ec.cma_es(5, 10)
    state = es.init(None, jnp.zeros(5), 1.0)
    flat = jnp.array([1.0] * 8 + [5.0, 6.0])
    for g, expected in [(0, []), (1, ["tolflatfitness"])]:
        x, state = es.ask(jax.random.key(g), state)
        state = es.tell(state, x, flat)
        assert ec.stop_reasons(es.stop(state)) == expected
    x, state = es.ask(jax.random.key(2), state)
    state = es.tell(state, x, jnp.arange(10.0))  # not flat: the counter resets
    assert ec.stop_reasons(es.stop(state)) == []


def test_sphere_without_target_stops_on_tolerances_like_pycma():
    es = ec.cma_es(5)
    res = jax.vmap(lambda k: ec.minimize(es, sphere, k, 0.5 * jnp.ones(5), 0.3))(
        jax.random.split(jax.random.key(1), 6)
    )
    why = ec.stop_reasons(res.stop_flags)
    assert all(set(w) <= {"tolfun", "tolfunhist", "tolx"} and w for w in why), why
    ours = np.median(np.asarray(res.state.evals))
    ref, _ = pycma_runs(sphere, 5, es.popsize, 6, ftarget=-np.inf, x0=0.5, sigma0=0.3)
    assert abs(ours / np.median(ref) - 1) < 0.15, (ours, np.median(ref))


def test_tolx():
    res, why = _run(sphere, tolfun=0.0, tolfunhist=0.0, tolx=1e-6)
    assert why == ["tolx"]
    assert float(res.state.sigma) * float(jnp.max(jnp.sqrt(jnp.diag(res.state.C)))) < 1e-6


def test_tolupsigma_and_tolfacupx_on_linear():
    res, why = _run(linear, tolfacupx=np.inf, tolupsigma=1e3)
    assert why == ["tolupsigma"]
    assert float(res.state.sigma / jnp.max(res.state.D)) > 0.3 * 1e3
    res, why = _run(linear)
    assert why == ["tolfacupx"]


def test_tolconditioncov():
    res, why = _run(lambda x: ellipsoid(x, 1e12), n=4, tolconditioncov=1e6)
    assert why == ["tolconditioncov"]
    D = np.asarray(res.state.D)
    assert D[-1] ** 2 / D[0] ** 2 > 1e6


@pytest.mark.parametrize("name", ["noeffectcoord", "noeffectaxis"])
def test_noeffect(name):
    other = {"noeffectaxis": "noeffectcoord", "noeffectcoord": "noeffectaxis"}[name]
    res, why = _run(sphere, x0=1e10, sigma0=1e-8, tolfun=0.0, **{other: False})
    assert why == [name] and int(res.state.generation) == 1


def test_tolstagnation_on_pure_noise():
    # Fitness that does not depend on the distribution's location: no progress of the
    # best or median, so tolstagnation fires once its windows are full.
    def fn(x):
        return jnp.sin(1e4 * jnp.sum(x * jnp.arange(1.0, 4.0))) + 2.0

    res, why = _run(
        fn,
        n=3,
        x0=0.0,
        sigma0=1.0,
        tolfun=0.0,
        tolfunhist=0.0,
        tolflatfitness=np.inf,
        tolfacupx=np.inf,
    )
    assert "tolstagnation" in why, why
    assert int(res.state.generation) > 500  # pycma needs > 100 entries, one per 5 iterations
