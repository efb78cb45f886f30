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


# Masked population size (params.popsize), shared with CMA-ES through CMAParams.

_FIELDS = ("mean", "sigma", "C", "p_sigma", "p_c", "evals", "best_f", "best_x", "generation")


def ellipsoid_rows(x):
    """The separable ellipsoid of each row (conditioning 1e6)."""
    n = x.shape[1]
    return jnp.sum(x**2 * 1e6 ** (jnp.arange(n) / (n - 1))[None, :], axis=1)


def _told_padded(es, state, x, f, rng):
    """Tell `x` padded to ``es.popsize`` rows: garbage points with the best fitness."""
    pad = es.popsize - x.shape[0]
    x = jnp.vstack([x, jnp.asarray(rng.normal(size=(pad, x.shape[1])))])
    return es.tell(state, x, jnp.concatenate([f, -jnp.ones(pad)]))


@pytest.mark.parametrize("preset", ["ros_hansen", "cmaes"])
@pytest.mark.parametrize("build", ["max_popsize", "popsize"])
def test_masked_population_is_a_smaller_population(preset, build):
    """Rows from params.popsize on change nothing: same run as a sep-CMA-ES of that λ.

    A strategy of 12 rows (``max_popsize=12``, or simply ``popsize=12``) with
    ``params.popsize = 8`` is told the points of a λ = 8 strategy plus 4 padding rows
    of the best fitness; its state must be that of the λ = 8 strategy.
    """
    n, lam, cap = 5, 8, 12
    small = ec.sep_cma_es(n, lam, preset=preset)
    if build == "max_popsize":
        big = ec.sep_cma_es(n, lam, max_popsize=cap, preset=preset)
    else:
        big = ec.sep_cma_es(n, cap, preset=preset)
    assert big.popsize == cap and ec.MASKED_POPSIZE in big.capabilities
    s_small = small.init(None, jnp.ones(n), 0.7)
    s_big = big.init(None, jnp.ones(n), 0.7, big.default_params(lam))
    assert int(s_big.params.popsize) == lam and s_big.params.popsize.dtype == jnp.int32
    rng = np.random.default_rng(0)
    for g in range(30):
        x, s_small = small.ask(jax.random.key(g), s_small)
        big_x, s_big = big.ask(jax.random.key(g), s_big)
        assert big_x.shape == (cap, n)
        f = ellipsoid_rows(x)
        s_small = small.tell(s_small, x, f)
        s_big = _told_padded(big, s_big, x, f, rng)
    for name in _FIELDS:
        np.testing.assert_allclose(
            getattr(s_big, name), getattr(s_small, name), rtol=1e-12, err_msg=name
        )
    assert int(s_big.evals) == 30 * lam


def test_one_compiled_strategy_vmaps_over_population_sizes():
    """vmap over traced params.popsize: each run equals its own strategy of that λ."""
    n, lams, cap = 6, (4, 7, 12), 12
    big = ec.sep_cma_es(n, 4, max_popsize=cap)
    params = jax.vmap(big.default_params)(jnp.asarray(lams))
    for i, lam in enumerate(lams):  # traced λ gives the NumPy constants
        concrete = big.default_params(lam)
        for field in concrete._fields:
            np.testing.assert_allclose(
                getattr(params, field)[i], getattr(concrete, field), rtol=1e-12, err_msg=field
            )
    states = jax.vmap(lambda p: big.init(None, jnp.ones(n), 0.5, p))(params)
    tell = jax.jit(jax.vmap(big.tell))
    smalls = [ec.sep_cma_es(n, lam) for lam in lams]
    singles = [es.init(None, jnp.ones(n), 0.5) for es in smalls]
    rng = np.random.default_rng(1)
    for g in range(25):
        xs, fs = [], []
        for i, es in enumerate(smalls):
            x, singles[i] = es.ask(jax.random.key(g), singles[i])
            f = ellipsoid_rows(x)
            singles[i] = es.tell(singles[i], x, f)
            pad = cap - x.shape[0]
            xs.append(jnp.vstack([x, jnp.asarray(rng.normal(size=(pad, n)))]))
            fs.append(jnp.concatenate([f, jnp.full(pad, -1.0)]))
        states = tell(states, jnp.stack(xs), jnp.stack(fs))
    for i, single in enumerate(singles):
        for name in _FIELDS:
            np.testing.assert_allclose(
                getattr(states, name)[i], getattr(single, name), rtol=1e-12, err_msg=name
            )


def test_sep_params_are_cma_params():
    """One params type: SepCMAParams names CMAParams; eigen_gap is unused and no override."""
    assert ec.SepCMAParams is ec.CMAParams
    es = ec.sep_cma_es(6, 8, max_popsize=10)
    p = es.default_params()
    assert isinstance(p, ec.CMAParams) and float(p.eigen_gap) == 0.0 and int(p.popsize) == 8
    assert p.weights.shape == (10,) and float(jnp.sum(p.weights[4:])) == 0.0
    with pytest.raises(TypeError, match="eigen_gap"):
        es.default_params(eigen_gap=3.0)
    with pytest.raises(TypeError, match="popsize"):
        es.default_params(1.5)
    with pytest.raises(ValueError, match="max_popsize=10"):
        es.default_params(11)
    with pytest.raises(ValueError, match="popsize must be >= 2"):
        es.default_params(1)
    with pytest.raises(ValueError, match="max_popsize"):
        ec.sep_cma_es(6, 8, max_popsize=7)
    # sep's own range (c1 + c_mu < 2), not CMA-ES's (<= 1); popsize within max_popsize
    assert float(es.default_params(c1=0.5, c_mu=1.2).c_mu) == 1.2
    with pytest.raises(ValueError, match="c1 \\+ c_mu"):
        es.default_params(c1=0.9, c_mu=1.2)
    with pytest.raises(ValueError, match="popsize"):
        es.init(None, jnp.ones(6), 0.5, p._replace(popsize=jnp.asarray(11, jnp.int32)))
    with pytest.raises(ValueError, match="eigen_gap must have shape"):
        es.init(None, jnp.ones(6), 0.5, p._replace(eigen_gap=jnp.zeros(2)))
    # an eigen_gap changes nothing: sep-CMA-ES never decomposes its diagonal C
    a, b = (
        ec.minimize(es, sphere, jax.random.key(0), jnp.ones(6), 0.5, q, generations=20)
        for q in (p, p._replace(eigen_gap=jnp.asarray(7.0)))
    )
    np.testing.assert_array_equal(a.state.mean, b.state.mean)


def test_sweep_over_sep_popsize_and_c1_equals_runs_alone():
    es = ec.sep_cma_es(4, 6, max_popsize=12)
    options = {"ftarget": 1e-10, "maxiter": 60}
    grid = {"popsize": [6, 12], "c1": [0.05, 0.1]}
    res = ec.sweep(es, sphere, np.full(4, 0.8), 0.5, grid, seeds=[2], options=options)
    assert len(res.table) == 4
    for row in res.table:
        params = es.default_params(int(row["popsize"]), c1=float(row["c1"]))
        single = ec.minimize(es, sphere, jax.random.key(2), jnp.full(4, 0.8), 0.5, params, options)
        assert row["best_f"] == float(single.best_f)
        assert row["evals"] == int(single.state.evals)
        assert row["evals"] == int(row["popsize"]) * int(row["generations"])
    assert len({(r["best_f"], r["evals"]) for r in res.table}) == 4  # the settings matter
