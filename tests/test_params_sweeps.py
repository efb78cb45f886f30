"""Sweepable params: ``default_params(**overrides)`` under vmap, re-derived CMA constants,
declared capabilities and summaries, and value equality of strategies (no recompilation)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.core.termination import DistributionSummary
from evojax_cma.problems import rosenbrock, sphere


def _assert_trees_close(batched, runs, index, rtol=1e-6):
    """Entry `index` of the batched pytree equals the pytree `runs[index]`."""
    got = jax.tree_util.tree_map(lambda x: np.asarray(x[index]), batched)
    for a, b in zip(
        jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(runs[index]), strict=True
    ):
        np.testing.assert_allclose(a, np.asarray(b), rtol=rtol, atol=1e-300)


# (a) a vmapped sweep built by default_params(**overrides) equals the runs one by one


def test_open_es_learning_rate_sweep_equals_runs_one_by_one():
    es = ec.open_es(6, 12)
    key, x0 = jax.random.key(3), jnp.full(6, 0.5)
    lrs = jnp.array([0.003, 0.01, 0.05])

    def run(params):
        return ec.minimize(es, sphere, key, x0, 0.1, params, options={"maxiter": 30}).state

    swept = jax.vmap(lambda lr: run(es.default_params(learning_rate=lr)))(lrs)
    for i, lr in enumerate(lrs):
        single = run(es.default_params(learning_rate=float(lr)))
        _assert_trees_close(swept, [single] * (i + 1), i)
    assert not np.allclose(swept.mean[0], swept.mean[2])  # the sweep did change something


@pytest.mark.parametrize("preset", ["pycma", "tutorial"])
def test_cma_c1_sweep_equals_runs_one_by_one(preset):
    es = ec.cma_es(5, 10, preset=preset)
    key, x0 = jax.random.key(7), jnp.full(5, 0.3)
    c1s = jnp.array([0.01, 0.03, 0.08])

    def run(params):
        return ec.minimize(es, rosenbrock, key, x0, 0.2, params, options={"maxiter": 30}).state

    swept = jax.vmap(lambda c1: run(es.default_params(c1=c1)))(c1s)
    singles = [run(es.default_params(c1=float(c1))) for c1 in c1s]
    for i in range(len(c1s)):
        _assert_trees_close(swept, singles, i)
    # The traced and the concrete derivation of the params agree too.
    traced = jax.vmap(lambda c1: es.default_params(c1=c1))(c1s)
    for i, c1 in enumerate(c1s):
        _assert_trees_close(traced, [es.default_params(c1=float(c1))] * (i + 1), i, 1e-13)


def test_vmapped_learning_rate_sweep_is_one_call():
    oes = ec.open_es(20, 16, learning_rate=0.01, chunk_size=8)
    key, x0 = jax.random.key(0), jnp.zeros(20)
    lrs, s0s = jnp.array([0.003, 0.01, 0.03]), jnp.array([0.02, 0.1, 0.05])
    res = jax.vmap(
        lambda lr, s0: ec.minimize(
            oes,
            rosenbrock,
            key,
            x0,
            s0,
            oes.default_params(learning_rate=lr),
            options={"maxiter": 20},
            chunked=True,
        )
    )(lrs, s0s)
    assert res.state.mean.shape == (3, 20)
    assert np.all(np.asarray(res.state.generation) == 20)
    one = ec.minimize(
        oes,
        rosenbrock,
        key,
        x0,
        0.1,
        oes.default_params(learning_rate=0.01),
        options={"maxiter": 20},
        chunked=True,
    )
    np.testing.assert_allclose(res.state.mean[1], one.state.mean, rtol=1e-6)


def test_variational_has_two_learning_rates_by_name():
    es = ec.variational(3, 8, learning_rate=0.02, sigma_learning_rate=0.03)
    p = es.default_params(learning_rate=0.1, sigma_learning_rate=0.2, sigma_b1=0.5)
    assert float(p.mean_optimizer["learning_rate"]) == 0.1
    assert float(p.sigma_optimizer["learning_rate"]) == 0.2
    assert float(p.sigma_optimizer["b1"]) == 0.5
    assert float(p.mean_optimizer["b1"]) == 0.9
    grid = jax.vmap(lambda s: es.default_params(sigma_learning_rate=s))(jnp.array([0.1, 0.3]))
    np.testing.assert_allclose(grid.sigma_optimizer["learning_rate"], [0.1, 0.3])
    np.testing.assert_allclose(grid.mean_optimizer["learning_rate"], [0.02, 0.02])


def test_fields_by_name_and_optimizer_dicts():
    es = ec.open_es(4, 8, sigma_decay=0.99)
    p = es.default_params(sigma_decay=0.9, sigma_min=0.01, optimizer={"b2": 0.99})
    assert (float(p.sigma_decay), float(p.sigma_min)) == (0.9, 0.01)
    assert float(p.optimizer["b2"]) == 0.99 and float(p.optimizer["learning_rate"]) == 0.01
    lm = ec.lm_ma_es(10)
    assert float(lm.default_params(d_sigma=3.0).d_sigma) == 3.0
    with pytest.raises(ValueError, match="learning_rate"):
        es.default_params(learning_rate=-1.0)
    with pytest.raises(ValueError, match="sigma_decay"):
        es.default_params(sigma_decay=0.0)
    with pytest.raises(ValueError, match="shape"):
        ec.cma_es(4).default_params(c1=jnp.ones(2))


def test_default_params_without_overrides_unchanged():
    for es in [ec.cma_es(6), ec.sep_cma_es(6), ec.lm_ma_es(6), ec.open_es(6, 8)]:
        a, b = es.default_params(), es.default_params(**{})
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)


# (b) overriding c1 / c_mu keeps the CMA weights valid (Hansen's tutorial, Eqs. 49-53)


def _tutorial_negative_mass(n, lam, c1, c_mu):
    """min(alpha_mu^-, alpha_mueff^-, alpha_posdef^-) of the tutorial, Eqs. (50)-(52)."""
    i = np.arange(1, lam + 1)
    raw = np.log((lam + 1) / 2) - np.log(i)  # Eq. (49)
    pos, neg = raw[raw > 0], raw[raw < 0]
    mueff = pos.sum() ** 2 / (pos**2).sum()
    mueff_minus = neg.sum() ** 2 / (neg**2).sum()
    alpha_mu = 1 + c1 / c_mu  # Eq. (50)
    alpha_mueff = 1 + 2 * mueff_minus / (mueff + 2)  # Eq. (51)
    alpha_posdef = (1 - c1 - c_mu) / (n * c_mu)  # Eq. (52)
    return min(alpha_mu, alpha_mueff, alpha_posdef)


@pytest.mark.parametrize(
    "overrides",
    [
        {"c1": 0.01},
        {"c1": 0.2},
        {"c_mu": 0.01},
        {"c_mu": 0.3},
        {"c1": 0.05, "c_mu": 0.05},
        {"c1": 0.3, "c_mu": 0.6},
    ],
)
@pytest.mark.parametrize("n, lam", [(5, 12), (10, 40)])
def test_cma_weights_stay_valid_under_c1_cmu_overrides(n, lam, overrides):
    es = ec.cma_es(n, lam)
    default = es.default_params()
    concrete = es.default_params(**overrides)
    keys = sorted(overrides)
    traced = jax.jit(lambda *v: es.default_params(**dict(zip(keys, v, strict=True))))(
        *(jnp.asarray(overrides[k]) for k in keys)
    )
    for p in (concrete, traced):
        c1, c_mu = float(p.c1), float(p.c_mu)
        assert c1 == overrides.get("c1", c1) and c_mu == overrides.get("c_mu", c_mu)
        w = np.asarray(p.weights)
        np.testing.assert_allclose(w[w > 0].sum(), 1.0, rtol=1e-13)
        bound = _tutorial_negative_mass(n, lam, c1, c_mu)
        assert -w[w < 0].sum() <= bound * (1 + 1e-12)
        np.testing.assert_allclose(-w[w < 0].sum(), bound, rtol=1e-12)  # Eq. (53)
        # pycma's lazy gap follows the rates it is derived from
        np.testing.assert_allclose(float(p.eigen_gap), 1 / (c1 + c_mu + 1e-23) / n / 10, 1e-12)
        # what does not depend on c1 / c_mu is unchanged
        for field in ("c_sigma", "d_sigma", "c_c", "chi_n"):
            assert float(getattr(p, field)) == pytest.approx(float(getattr(default, field)), 1e-14)


def test_cma_c_sigma_rederives_d_sigma_unless_given():
    for preset in ("pycma", "tutorial"):
        es = ec.cma_es(8, preset=preset)
        d = es.default_params()
        p = es.default_params(c_sigma=0.4)
        # d_sigma = 1 + 2 max(0, ...) + c_sigma in both presets (pycma's damps, Eq. 55)
        np.testing.assert_allclose(
            float(p.d_sigma) - 0.4, float(d.d_sigma) - float(d.c_sigma), rtol=1e-14
        )
        q = es.default_params(c_sigma=0.4, d_sigma=2.5)
        assert float(q.d_sigma) == 2.5
        t = jax.jit(lambda cs, es=es: es.default_params(c_sigma=cs))(0.4)
        np.testing.assert_allclose(float(t.d_sigma), float(p.d_sigma), rtol=1e-14)
    sep = ec.sep_cma_es(8)
    d, p = sep.default_params(), sep.default_params(c_sigma=0.4)
    np.testing.assert_allclose(float(p.d_sigma) - 0.4, float(d.d_sigma) - float(d.c_sigma))


def test_cma_weights_override_used_as_given():
    es = ec.cma_es(4, 6)
    w = jnp.array([0.5, 0.3, 0.2, 0.0, -0.1, -0.2])
    np.testing.assert_array_equal(es.default_params(weights=w).weights, w)
    assert math.isclose(float(es.default_params(weights=w).c1), float(es.default_params().c1))


# (c) unknown override names fail early with the valid names


@pytest.mark.parametrize(
    "make",
    [
        lambda: ec.cma_es(4),
        lambda: ec.sep_cma_es(4),
        lambda: ec.lm_ma_es(4),
        lambda: ec.open_es(4, 8),
        lambda: ec.variational(4, 8),
    ],
)
def test_unknown_override_is_a_type_error(make):
    es = make()
    with pytest.raises(TypeError, match="valid names are"):
        es.default_params(not_a_param=1.0)
    with pytest.raises(TypeError, match="not_a_param"):
        jax.vmap(lambda v: es.default_params(not_a_param=v))(jnp.ones(2))


# 2. capabilities, summary and equality


def test_capabilities_and_summaries():
    expected = {
        "cma_es": {ec.COVARIANCE, ec.WEIGHTED, ec.MASKED_POPSIZE},
        "sep_cma_es": {ec.DIAGONAL, ec.WEIGHTED, ec.MASKED_POPSIZE},
        "lm_ma_es": {ec.WEIGHTED},
        "open_es": {ec.CHUNKED},
        "variational": {ec.CHUNKED},
    }
    strategies = [ec.cma_es(4), ec.sep_cma_es(4), ec.lm_ma_es(4), ec.open_es(4, 8)]
    for es in [*strategies, ec.variational(4, 8)]:
        assert es.capabilities == frozenset(expected[es.name]), es.name
        state = es.init(jax.random.key(0), jnp.ones(4), 0.5)
        s = es.summary(state)
        assert isinstance(s, DistributionSummary)
        assert s.mean.shape == (4,) and s.stds.shape == (4,)
        if ec.CHUNKED in es.capabilities:
            assert es.ask_chunk is not None and es.tell_keyed is not None
        if ec.COVARIANCE in es.capabilities:
            assert state.C.shape == (4, 4)
        if ec.DIAGONAL in es.capabilities:
            assert state.C.shape == (4,)
        if ec.WEIGHTED in es.capabilities:
            assert state.params.weights.shape == (es.popsize,)
        if ec.MASKED_POPSIZE in es.capabilities:
            assert state.params.popsize.shape == ()


def test_equal_strategies_compare_and_hash_alike():
    assert ec.cma_es(4) == ec.cma_es(4)
    assert hash(ec.cma_es(4)) == hash(ec.cma_es(4))
    assert ec.cma_es(4) != ec.cma_es(4, preset="tutorial")
    assert ec.cma_es(4) != ec.cma_es(4, active=False)
    assert ec.cma_es(4, 6, max_popsize=8) != ec.cma_es(4, 8)
    assert ec.cma_es(4, tolfun=1e-3) != ec.cma_es(4)
    assert ec.sep_cma_es(4) != ec.sep_cma_es(4, preset="cmaes")
    assert ec.open_es(4, 8) == ec.open_es(4, 8)
    assert hash(ec.open_es(4, 8)) == hash(ec.open_es(4, 8))
    assert ec.open_es(4, 8) != ec.open_es(4, 8, antithetic=False)
    assert ec.open_es(4, 8) != ec.open_es(4, 8, chunk_size=4)
    assert ec.open_es(4, 8) != ec.open_es(4, 8, shaping="z_score")
    assert ec.open_es(4, 8) != ec.open_es(4, 8, shaping=lambda f: f)
    assert ec.open_es(4, 8) != ec.open_es(4, 8, learning_rate=0.1)
    assert ec.variational(4, 8) != ec.variational(4, 8, sigma_learning_rate=0.1)
    assert ec.lm_ma_es(8) != ec.lm_ma_es(8, memory=2)


def test_equal_strategies_compile_once():
    traces = []

    def generation(es, key, x0):
        traces.append(es.name)
        state = es.init(key, x0, 0.5)
        x, state = es.ask(key, state)
        return es.tell(state, x, jnp.sum(x**2, axis=1)).mean

    step = jax.jit(generation, static_argnums=0)
    key, x0 = jax.random.key(0), jnp.ones(4)
    a = step(ec.cma_es(4), key, x0)
    b = step(ec.cma_es(4), key, x0)
    np.testing.assert_array_equal(a, b)
    assert len(traces) == 1
    step(ec.cma_es(4, preset="tutorial"), key, x0)
    assert len(traces) == 2
    step(ec.open_es(4, 8), key, x0)
    step(ec.open_es(4, 8), key, x0)
    assert len(traces) == 3
