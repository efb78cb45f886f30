"""LM-MA-ES against a transcription of its Algorithm 1; shaping; invariance; convergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import evojax_cma as ec
from evojax_cma.core import shaping
from evojax_cma.problems import ellipsoid, random_rotation, rosenbrock, rotated, sphere


def _lmmaes_reference_step(mean, sigma, s, M, t, z, f, w, cs, cd, cc):
    """Alg. 1 of Loshchilov et al. (2019) with z kept from sampling (plain NumPy)."""
    n = mean.shape[0]
    d = z.copy()
    for j in range(min(t, M.shape[0])):
        d = (1 - cd[j]) * d + cd[j] * np.outer(d @ M[j], M[j])
    x = mean + sigma * d
    order = np.argsort(f(x), kind="stable")
    mueff = 1 / np.sum(w**2)
    mu = len(w)
    z_w, d_w = w @ z[order[:mu]], w @ d[order[:mu]]
    s = (1 - cs) * s + np.sqrt(mueff * cs * (2 - cs)) * z_w
    M = np.stack(
        [(1 - cc[j]) * M[j] + np.sqrt(mueff * cc[j] * (2 - cc[j])) * z_w for j in range(M.shape[0])]
    )
    return x, mean + sigma * d_w, sigma * np.exp(cs / 2 * (s @ s / n - 1)), s, M


def test_lm_ma_es_matches_algorithm_1_with_population_only_tell():
    # Our tell sees only the points and recovers z by inverting the transformations; the
    # reference keeps z. States must agree to rounding over 30 generations.
    n, lam = 40, 10
    es = ec.lm_ma_es(n, lam, memory=6)
    p = es.default_params()
    w, cs = np.asarray(p.weights)[: lam // 2], float(p.c_sigma)
    cd, cc = np.asarray(p.c_d), np.asarray(p.c_c)
    state = es.init(None, np.full(n, 0.5), 0.3)
    mean, sigma, s, M = np.full(n, 0.5), 0.3, np.zeros(n), np.zeros((6, n))
    rng = np.random.default_rng(0)
    f = lambda X: np.asarray(jax.vmap(ellipsoid)(jnp.asarray(X)))  # noqa: E731
    tell = jax.jit(es.tell)
    for t in range(30):
        z = rng.standard_normal((lam, n))
        x, mean, sigma, s, M = _lmmaes_reference_step(mean, sigma, s, M, t, z, f, w, cs, cd, cc)
        state = tell(state, jnp.asarray(x), jnp.asarray(f(x)))
        np.testing.assert_allclose(np.asarray(state.mean), mean, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(float(state.sigma), sigma, rtol=1e-11)
        np.testing.assert_allclose(np.asarray(state.M), M, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(state.p_sigma), s, rtol=1e-9, atol=1e-12)


def test_utilities_are_tie_safe():
    f = jnp.array([3.0, 1.0, 1.0, jnp.nan, 0.5, 1.0, jnp.inf])
    r = shaping.midranks(f)
    np.testing.assert_array_equal(np.asarray(r), [4.0, 2.0, 2.0, 5.5, 0.0, 2.0, 5.5])
    c = ec.centered_ranks(f)
    assert abs(float(jnp.sum(c))) < 1e-12 and float(c[1]) == float(c[2]) == float(c[5])
    u = shaping.cma_utilities(f)
    assert abs(float(jnp.sum(u)) + 1.0) < 1e-12 and float(u[1]) == float(u[2]) == float(u[5])
    assert float(u[4]) == float(jnp.min(u)) and float(u[3]) == float(u[6]) == 0.0
    z = shaping.z_score(f)
    finite = np.isfinite(np.asarray(f))
    assert abs(float(jnp.sum(z[finite]))) < 1e-12 and float(z[3]) == float(jnp.max(z))
    assert np.all(np.asarray(shaping.z_score(jnp.ones(4))) == 0.0)


@pytest.mark.parametrize("size", [2, 7, 64, 256, 257, 1000])
def test_midranks_are_scipy_average_ranks_on_both_paths(size, monkeypatch):
    """Counted pairwise (up to PAIRWISE_MAX) or sorted (beyond), ties and non-finite values
    give scipy's average ranks; both paths give the same integers."""
    stats = pytest.importorskip("scipy.stats", reason="scipy is the reference ranking")
    rng = np.random.default_rng(size)
    f = rng.integers(0, max(2, size // 3), size).astype(np.float32)  # many ties
    f[rng.integers(0, size, max(1, size // 10))] = np.nan
    f[rng.integers(0, size, max(1, size // 20))] = np.inf
    eff = np.where(np.isfinite(f), f, np.inf)
    want = stats.rankdata(eff, method="average") - 1
    np.testing.assert_array_equal(np.asarray(shaping.midranks(jnp.asarray(f))), want)
    lo, hi = shaping.tie_bounds(jnp.asarray(f))
    monkeypatch.setattr(shaping, "PAIRWISE_MAX", 0 if size <= 256 else 10**6)  # the other path
    lo2, hi2 = shaping.tie_bounds(jnp.asarray(f))
    np.testing.assert_array_equal(np.asarray(lo), np.asarray(lo2))
    np.testing.assert_array_equal(np.asarray(hi), np.asarray(hi2))


def test_plateau_gives_no_gradient_whatever_the_layout():
    # All-equal fitness: tie-safe utilities are all zero, so the mean must not move even
    # though the antithetic layout [e; -e] would turn index-ordered ranks into a push.
    for make in (ec.open_es, ec.variational):
        es = make(6, 10, optimizer=optax.sgd, learning_rate=1.0)
        state = es.init(None, jnp.zeros(6), 1.0)
        x, state = es.ask(jax.random.key(0), state)
        after = es.tell(state, x, jnp.zeros(10))
        np.testing.assert_array_equal(np.asarray(after.mean), np.zeros(6))


STRATEGIES = {
    "open_es": lambda n: ec.open_es(n, 20, learning_rate=0.05),
    "variational": lambda n: ec.variational(n, 20, learning_rate=0.05),
    "sep_cma_es": lambda n: ec.sep_cma_es(n),
    "lm_ma_es": lambda n: ec.lm_ma_es(n),
}


@pytest.mark.parametrize("name", STRATEGIES)
def test_rank_based_runs_are_invariant_to_increasing_transforms(name):
    es = STRATEGIES[name](8)
    opts = {"maxiter": 40}
    a = ec.minimize(es, rosenbrock, jax.random.key(1), jnp.zeros(8), 0.3, options=opts)
    b = ec.minimize(
        es,
        lambda x: jnp.exp(rosenbrock(x) / 10) - 5,
        jax.random.key(1),
        jnp.zeros(8),
        0.3,
        options=opts,
    )
    for fa, fb in zip(
        jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(fa), np.asarray(fb))
    np.testing.assert_array_equal(np.asarray(a.state.mean), np.asarray(b.state.mean))
    np.testing.assert_array_equal(np.asarray(a.state.sigma), np.asarray(b.state.sigma))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ec.open_es(5, 9), "popsize must be even"),
        (lambda: ec.variational(5, 9), "popsize must be even"),
        (lambda: ec.open_es(5, 10, learning_rate=0.0), "learning_rate must be > 0"),
        (lambda: ec.variational(5, 10, sigma_learning_rate=-1.0), "learning_rate must be > 0"),
        (lambda: ec.open_es(5, 12, chunk_size=5), "chunk_size must divide"),
        (lambda: ec.open_es(5, 12, chunk_size=3, antithetic=False), None),
        (lambda: ec.open_es(5, 12, chunk_size=3), "chunk_size must be even"),
        (lambda: ec.open_es(5, 10, shaping="ranks!"), "shaping must be"),
        (lambda: ec.open_es(5, 10, optimizer="adam"), "optimizer must be"),
        (lambda: ec.open_es(5, 10, sigma_decay=0.0), "sigma_decay must be > 0"),
        (lambda: ec.variational(5, 10, sigma_min=2.0, sigma_max=1.0), "sigma_min < sigma_max"),
        (lambda: ec.lm_ma_es(1), "num_dims must be >= 2"),
        (lambda: ec.lm_ma_es(10, memory=0), "memory must be >= 1"),
        (lambda: ec.sep_cma_es(10, preset="pycma"), "preset must be one of"),
        (lambda: ec.open_es(5, 10, tolfnu=1.0), "unknown open_es option"),
    ],
)
def test_bad_input_is_rejected_before_tracing(call, match):
    if match is None:
        call()  # odd chunks are fine without antithetic sampling
        return
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("name", STRATEGIES)
def test_wrong_shapes_and_params_are_rejected(name):
    es = STRATEGIES[name](6)
    with pytest.raises(ValueError, match="x0 must have shape"):
        es.init(None, jnp.zeros(5), 1.0)
    with pytest.raises(ValueError, match="sigma0 must be finite and > 0"):
        es.init(None, jnp.zeros(6), 0.0)
    state = es.init(None, jnp.zeros(6), 1.0)
    x, state = es.ask(jax.random.key(0), state)
    with pytest.raises(ValueError, match="fitness must have shape"):
        es.tell(state, x, jnp.zeros(3))
    with pytest.raises(ValueError, match="population must have shape"):
        es.tell(state, x[:, :3], jnp.zeros(es.popsize))
    with pytest.raises(TypeError, match="params must be a"):
        es.init(None, jnp.zeros(6), 1.0, params={"learning_rate": 1.0})


def test_learning_rate_in_params_is_checked():
    es = ec.open_es(4, 10)
    p = es.default_params()
    bad = p._replace(optimizer={**p.optimizer, "learning_rate": jnp.asarray(-0.1)})
    with pytest.raises(ValueError, match="learning_rate"):
        es.init(None, jnp.zeros(4), 1.0, bad)


def _relative_progress(es, f, n, sigma0, gens, seeds=3, **opts):
    x0 = jnp.ones(n)
    run = jax.jit(
        jax.vmap(
            lambda k: ec.minimize(
                es, f, k, x0, sigma0, options={"maxiter": gens, "ftarget": 1e-8, **opts}
            )
        )
    )
    res = run(jax.random.split(jax.random.key(1), seeds))
    return np.asarray(res.state.best_f) / float(f(x0))


def _convergence_cases(n, gens_cma, gens_es):
    relli = rotated(ellipsoid, random_rotation(jax.random.key(42), n))
    lam_es = 100
    es_opts = dict(tolx=0.0)
    return [
        ("sep_cma_es", ec.sep_cma_es(n), sphere, 1.0, gens_cma, {}, 1e-8 / n),
        ("lm_ma_es", ec.lm_ma_es(n), sphere, 1.0, gens_cma, {}, 1e-8 / n),
        (
            "open_es",
            ec.open_es(n, lam_es, learning_rate=0.02, sigma_decay=0.995, sigma_min=1e-4),
            sphere,
            0.1,
            gens_es,
            es_opts,
            1e-2,
        ),
        (
            "variational",
            ec.variational(n, lam_es, learning_rate=0.02, sigma_learning_rate=0.02),
            sphere,
            0.1,
            gens_es,
            es_opts,
            1e-2,
        ),
        ("sep_cma_es", ec.sep_cma_es(n), relli, 1.0, gens_cma, {}, 1e-2),
        ("lm_ma_es", ec.lm_ma_es(n), relli, 1.0, gens_cma, {}, 1e-2),
        (
            "open_es",
            ec.open_es(n, lam_es, learning_rate=0.02, sigma_decay=0.995, sigma_min=1e-4),
            relli,
            0.1,
            gens_es,
            es_opts,
            1e-2,
        ),
        (
            "variational",
            ec.variational(n, lam_es, learning_rate=0.02, sigma_learning_rate=0.02),
            relli,
            0.1,
            gens_es,
            es_opts,
            1e-2,
        ),
    ]


@pytest.mark.slow  # ~30 s: two 100-D runs to 1e-8
def test_convergence_n100_sphere_and_rotated_ellipsoid():
    # 3 seeds each. Thresholds on f(best)/f(x0), x0 = ones: the CMA variants reach 1e-8 on
    # the sphere in 3000 generations; every strategy gains a factor 100 on the rotated
    # ellipsoid (condition 1e6). Measured (float32): sep 1e-3, LM-MA 5e-5, OpenAI-ES 3e-4,
    # variational 2e-4 of the initial value.
    for name, es, f, s0, gens, opts, tol in _convergence_cases(100, 3000, 1000):
        ratios = _relative_progress(es, f, 100, s0, gens, **opts)
        assert np.all(ratios <= tol), (name, f.__name__, ratios)


@pytest.mark.slow
def test_convergence_n1000_sphere_and_rotated_ellipsoid():
    cases = _convergence_cases(1000, 4000, 1000)
    for name, es, f, s0, gens, opts, _ in cases:
        ratios = _relative_progress(es, f, 1000, s0, gens, seeds=2, **opts)
        # at n = 1000 the budgets are too small for 1e-8; each strategy must gain a
        # factor 10 on both functions (4000 generations for the CMA variants: sep-CMA-ES is
        # not rotation invariant and measured 0.14 of f(x0) after 1500 on the rotated one)
        assert np.all(ratios <= 0.1), (name, f.__name__, ratios)
