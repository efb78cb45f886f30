"""Laplace and Student-t perturbations for open_es and variational: samples, score functions.

The defining property: with the density's score functions, the search-gradient estimate is
unbiased for the smoothed objective J(m, σ) = E_ε f(m + σ ε) under that density. Checked
against closed forms (a cubic, whose smoothing needs only the second moment) and against
central differences of a Monte-Carlo smoothed objective with common random numbers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import evojax_cma as ec
from evojax_cma.core.gaussian import Perturbation, perturbation

DENSITIES = [("gaussian", None), ("laplace", None), ("student_t", 10.0)]
IDS = ["gaussian", "laplace", "student_t"]
REFERENCE = {  # scipy's distributions scaled to unit variance
    "gaussian": stats.norm(),
    "laplace": stats.laplace(scale=1 / np.sqrt(2)),
    "student_t": stats.t(10.0, scale=np.sqrt(8.0 / 10.0)),
}

A = jnp.array([1.0, 2.0, 3.0, 4.0])
B = jnp.array([0.5, -1.0, 0.0, 2.0])
C = jnp.array([0.3, -0.2, 0.1, 0.4])
M = jnp.array([0.5, -0.4, 0.2, 0.3])
SIGMA = jnp.array([0.3, 0.5, 0.4, 0.6])


def cubic(x):
    return jnp.sum(C * x**3 + 0.5 * A * x**2 + B * x)


def smoothed_gradients():
    """∇_m J and ∂J/∂log σ of the cubic for any ε with mean 0, variance 1, E ε³ = 0.

    J = Σ c (m³ + 3 m σ²) + a (m² + σ²)/2 + b m, by the moments of ε alone.
    """
    grad_m = 3 * C * (M**2 + SIGMA**2) + A * M + B
    grad_log_sigma = SIGMA**2 * (6 * C * M + A)
    return np.asarray(grad_m), np.asarray(grad_log_sigma)


def estimates(name, df, fn, reps, lam=20, seed=0):
    """(reps, n) estimates of ∇_m J and ∂J/∂log σ from one variational tell each.

    With shaping="raw" and SGD at learning rate 1, one tell moves the mean by exactly
    -∇_m and log σ by exactly -∂/∂log σ of the estimate.
    """
    es = ec.variational(
        4,
        lam,
        optimizer=optax.sgd,
        learning_rate=1.0,
        sigma_learning_rate=1.0,
        shaping="raw",
        perturbation=name,
        df=df,
    )
    state = es.init(None, M, 1.0)._replace(sigma=SIGMA)

    def one(key):
        x, s = es.ask(key, state)
        new = es.tell(s, x, jax.vmap(fn)(x))
        return M - new.mean, jnp.log(SIGMA) - jnp.log(new.sigma)

    g_m, g_s = jax.vmap(one)(jax.random.split(jax.random.key(seed), reps))
    return np.asarray(g_m), np.asarray(g_s)


def within(estimates, expected, k=4.0, extra_se=0.0):
    """Whether the mean of `estimates` is within k standard errors of `expected`."""
    se = np.sqrt(estimates.var(axis=0) / len(estimates) + extra_se**2)
    return np.all(np.abs(estimates.mean(axis=0) - expected) < k * se), estimates.mean(0), se


@pytest.mark.parametrize(("name", "df"), DENSITIES, ids=IDS)
def test_samples_follow_the_density_with_unit_variance(name, df):
    # KS test of 2000 draws per seed against scipy's distribution; 3 seeds, each p > 1e-3.
    # Antithetic sampling mirrors each even row in the next one: both follow the density.
    es = ec.open_es(1, 4000, perturbation=name, df=df)
    state = es.init(None, jnp.zeros(1), 1.0)
    for seed in range(3):
        x, _ = es.ask(jax.random.key(seed), state)
        x = np.asarray(x[:, 0])
        np.testing.assert_array_equal(x[0::2], -x[1::2])
        p = stats.kstest(x[0::2], REFERENCE[name].cdf).pvalue
        assert p > 1e-3, (name, seed, p)
    # and a wrong scale is detected by the same test (the test can fail)
    assert stats.kstest(1.3 * x[0::2], REFERENCE[name].cdf).pvalue < 1e-3


@pytest.mark.parametrize(("name", "df"), DENSITIES, ids=IDS)
def test_score_function_gradient_is_unbiased_for_the_smoothed_cubic(name, df):
    # 3000 tells of λ = 20 (antithetic) at m = M, σ = SIGMA; tolerance 4 standard errors
    # per coordinate, for the mean and the log σ gradient of J under the same density.
    g_m, g_s = estimates(name, df, cubic, reps=3000)
    true_m, true_s = smoothed_gradients()
    for est, true in [(g_m, true_m), (g_s, true_s)]:
        ok, mean, se = within(est, true)
        assert ok, (name, mean, true, se)
    if name != "gaussian":
        # The Gaussian's scale score ε² - 1 on these samples would estimate
        # σ² (E ε⁴ - 1)/2 (6 c m + a), not the true σ² (6 c m + a): the density's own
        # score is what makes the estimate unbiased (Laplace: E ε⁴ = 6; t_10: 4), and the
        # estimate above is far from that biased value.
        eps_fourth = {"laplace": 6.0, "student_t": 4.0}[name]
        assert not within(g_s, true_s * (eps_fourth - 1) / 2)[0]


def wavy(x):
    return jnp.sum(x**2 - jnp.cos(3.0 * x) + 0.5 * jnp.sin(5.0 * x[::-1]) * x)


@pytest.mark.parametrize(("name", "df"), DENSITIES[1:], ids=IDS[1:])
def test_score_function_gradient_matches_differences_of_the_monte_carlo_smoothing(name, df):
    # No closed form here: the smoothed objective is a Monte-Carlo mean over 200,000 draws
    # of ε from the same density, and its central differences (h = 1e-3, in m and in
    # log σ) use the same draws (common random numbers). Tolerance: 4 standard errors of
    # the difference of the two estimates.
    g_m, g_s = estimates(name, df, wavy, reps=3000, seed=1)
    eps = Perturbation(name, df).sample(jax.random.key(7), (200_000, 4), jnp.float64)
    h = 1e-3

    def pathwise(dm, dlog):
        x_plus = (M + dm)[None, :] + (SIGMA * jnp.exp(dlog))[None, :] * eps
        x_minus = (M - dm)[None, :] + (SIGMA * jnp.exp(-dlog))[None, :] * eps
        return np.asarray((jax.vmap(wavy)(x_plus) - jax.vmap(wavy)(x_minus)) / (2 * h))

    zero = jnp.zeros(4)
    for j in range(4):
        e_j = jnp.zeros(4).at[j].set(h)
        for est, diffs in [(g_m, pathwise(e_j, zero)), (g_s, pathwise(zero, e_j))]:
            fd_se = diffs.std() / np.sqrt(len(diffs))
            ok, mean, se = within(est[:, j : j + 1], diffs.mean(), extra_se=fd_se)
            assert ok, (name, j, mean, diffs.mean(), se)


def test_open_es_mean_gradient_uses_the_density_score():
    # open_es with Laplace noise on the cubic: unbiased with ψ(ε) = √2 sign ε; the
    # Gaussian score ε on the same samples would be off by c σ² (E ε⁴ - 3) = 3 c σ².
    es = ec.open_es(
        4, 20, optimizer=optax.sgd, learning_rate=1.0, shaping="raw", perturbation="laplace"
    )
    state = es.init(None, M, 0.4)

    def one(key):
        x, s = es.ask(key, state)
        return M - es.tell(s, x, jax.vmap(cubic)(x)).mean

    g = np.asarray(jax.vmap(one)(jax.random.split(jax.random.key(2), 3000)))
    true = np.asarray(3 * C * (M**2 + 0.16) + A * M + B)
    ok, mean, se = within(g, true)
    assert ok, (mean, true, se)
    biased = true + 3 * np.asarray(C) * 0.16
    assert not within(g, biased)[0]


@pytest.mark.parametrize(
    ("make", "name", "df"),
    [
        pytest.param(ec.open_es, "laplace", None, marks=pytest.mark.slow),
        (ec.variational, "student_t", 5.0),
    ],
    ids=["open_es-laplace", "variational-student_t"],
)
def test_chunked_run_equals_unchunked(make, name, df):
    es = make(6, 16, chunk_size=4, learning_rate=0.05, perturbation=name, df=df)
    args = (es, lambda x: jnp.sum(x**2), jax.random.key(5), jnp.ones(6), 0.3)
    full, chunked = (ec.minimize(*args, generations=25, chunked=c).state for c in (False, True))
    # the whole state: mean, σ, optax states, best point, counters
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13), full, chunked
    )


def test_settings_are_static_values_and_bad_input_is_named():
    assert ec.open_es(3, 10, perturbation="student_t", df=5) == ec.open_es(
        3, 10, perturbation="student_t", df=5.0
    )
    assert ec.open_es(3, 10, perturbation="student_t", df=5) != ec.open_es(
        3, 10, perturbation="student_t", df=6
    )
    assert ec.variational(3, 10, perturbation="laplace") != ec.variational(3, 10)
    assert perturbation("laplace") == Perturbation("laplace")
    for make in (ec.open_es, ec.variational):
        with pytest.raises(ValueError, match="perturbation must be one of"):
            make(3, 10, perturbation="cauchy")
        with pytest.raises(ValueError, match="df must be finite and > 2"):
            make(3, 10, perturbation="student_t", df=2)
        with pytest.raises(ValueError, match="df must be finite and > 2"):
            make(3, 10, perturbation="student_t", df=float("inf"))
        with pytest.raises(ValueError, match="needs df"):
            make(3, 10, perturbation="student_t")
        with pytest.raises(ValueError, match="df applies to perturbation='student_t' only"):
            make(3, 10, perturbation="laplace", df=4)
        with pytest.raises(TypeError, match="perturbation must be a string"):
            make(3, 10, perturbation=None)
        with pytest.raises(TypeError, match="df must be a real number"):
            make(3, 10, perturbation="student_t", df="5")
