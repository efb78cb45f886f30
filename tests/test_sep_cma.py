"""sep-CMA-ES: one-to-one against cmaes' SepCMA, and the [RH08] claim on separable problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.problems import ellipsoid, linear, rosenbrock, sphere

from oracle import relerr, sepcma_trace

TOL = 1e-12


def _errors(ref, state):
    return dict(
        mean=relerr(state.mean, ref._mean),
        sigma=relerr(state.sigma, ref._sigma),
        C=relerr(state.C, ref._C),
        p_sigma=relerr(state.p_sigma, ref._p_sigma),
        p_c=relerr(state.p_c, ref._pc),
    )


@pytest.mark.parametrize(
    "n, lam, fn, gens",
    [(5, 8, sphere, 30), (5, 8, rosenbrock, 30), (10, 100, ellipsoid, 25), (200, 20, sphere, 20)],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_sepcma_one_to_one(n, lam, fn, gens):
    for ref, state, _ in sepcma_trace(n, lam, fn, gens):
        errs = _errors(ref, state)
        assert max(errs.values()) <= TOL, (int(state.generation), errs)
    assert int(state.generation) == gens


@pytest.mark.parametrize("n, lam", [(5, 8), (10, 100)])
def test_sepcma_one_to_one_through_hsigma_stall(n, lam):
    hsigs = []
    for ref, state, hsig in sepcma_trace(n, lam, sphere, 30, sigma0=1.0, then=(10, linear)):
        hsigs.append(hsig)
        errs = _errors(ref, state)
        assert max(errs.values()) <= TOL, (int(state.generation), errs)
    assert not all(hsigs) and any(hsigs), hsigs


def test_presets_differ_only_in_c1_and_cmu():
    a = ec.sep_cma_es(30).default_params()
    b = ec.sep_cma_es(30, preset="cmaes").default_params()
    for name in a._fields:
        if name not in ("c1", "c_mu"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # [RH08]: c_cov is split into c_cov/mu_eff and c_cov (1 - 1/mu_eff)
    mueff = float(jnp.sum(a.weights) ** 2 / jnp.sum(a.weights**2))
    np.testing.assert_allclose(float(a.c1 * mueff), float(a.c1 + a.c_mu), rtol=1e-6)


def _evals_to_target(es, fn, n, seeds):
    run = jax.jit(
        jax.vmap(lambda k: ec.minimize(es, fn, k, jnp.ones(n), 1.0, options={"ftarget": 1e-8}))
    )
    res = run(jax.random.split(jax.random.key(3), seeds))
    assert bool(jnp.all(res.state.best_f <= 1e-8))
    return np.asarray(res.state.evals)


def test_sep_beats_full_cma_on_separable_ellipsoid_n30():
    # [RH08], Fig. 2: on the separable ellipsoid sep-CMA-ES needs far fewer evaluations
    # than CMA-ES, which must learn n(n+1)/2 parameters. 5 seeds each; the claim is about
    # the median, and the gap (about 5x at n=30) leaves a wide margin.
    n = 30
    sep = np.median(_evals_to_target(ec.sep_cma_es(n), ellipsoid, n, 5))
    full = np.median(_evals_to_target(ec.cma_es(n), ellipsoid, n, 5))
    assert sep < 0.5 * full, (sep, full)
