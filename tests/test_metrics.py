"""Per-generation metrics in one place (``Strategy.metrics``) and the history columns they fill.

The gradient norm and step size of the score-function strategies are checked against an
estimate computed here by hand from the same samples (NumPy ranks, Salimans et al.'s
estimator) and optax's own Adam update; the CMA metrics against NumPy's eigenvalues of C.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import evojax_cma as ec
from evojax_cma import history as hist_lib
from evojax_cma.core.types import METRICS, strategy_metrics, summary_metrics

N, LAM, LR = 6, 12, 0.03


def _sphere(x):
    return jnp.sum((x - 0.4) ** 2, axis=-1)


def _one_generation(es, seed):
    state = es.init(jax.random.key(seed), jnp.linspace(-1.0, 1.0, N), 0.3)
    x, _ = es.ask(jax.random.key(seed + 1), state)
    f = _sphere(x)
    return state, x, f, es.tell(state, x, f)


def _centred_ranks(f):
    """Salimans et al.'s utilities for minimisation: rank/(λ-1) - 1/2 (distinct f here)."""
    ranks = np.argsort(np.argsort(f))
    return ranks / (len(f) - 1) - 0.5


@pytest.mark.parametrize("name", ["open_es", "variational"])
def test_gradient_norm_and_step_size_match_a_hand_computed_estimate(name):
    make = {
        "open_es": lambda: ec.open_es(N, LAM, learning_rate=LR),
        "variational": lambda: ec.variational(N, LAM, learning_rate=LR),
    }[name]
    es = make()
    for seed in (0, 10, 20):
        state, x, f, after = _one_generation(es, seed)
        m0, sigma = np.asarray(state.mean), np.asarray(state.sigma)
        eps = (np.asarray(x) - m0) / sigma  # σ a scalar (OpenAI-ES) or a vector
        u = _centred_ranks(np.asarray(f))
        grad = (u @ eps) / (LAM * sigma)  # [SHC17] Alg. 1; [SB12] for the mean
        updates, _ = optax.adam(LR).update(jnp.asarray(grad), optax.adam(LR).init(state.mean))
        got = strategy_metrics(es, after)
        np.testing.assert_allclose(float(got["grad_norm"]), np.linalg.norm(grad), rtol=1e-10)
        np.testing.assert_allclose(
            float(got["step_size"]), float(jnp.linalg.norm(updates)), rtol=1e-10
        )
        # Adam's first step is lr * g / (|g| + eps) per coordinate: norm ≈ lr sqrt(n)
        assert float(got["step_size"]) == pytest.approx(LR * np.sqrt(N), rel=1e-6)
        np.testing.assert_allclose(np.asarray(after.mean), m0 + np.asarray(updates), rtol=1e-12)


def test_every_strategy_exposes_metrics_in_one_place():
    built = {
        "cma_es": ec.cma_es(N),
        "sep_cma_es": ec.sep_cma_es(N),
        "lm_ma_es": ec.lm_ma_es(N),
        "open_es": ec.open_es(N, LAM),
        "variational": ec.variational(N, LAM),
    }
    for name, es in built.items():
        state, _, f, after = _one_generation(es, 3)
        m = strategy_metrics(es, after)
        assert set(m) <= set(METRICS), name
        assert {"sigma", "axis_ratio", "axis_lengths", "stds", "mean"} <= set(m), name
        has_gradient = name in ("open_es", "variational")
        assert ("grad_norm" in m) == has_gradient, name
        values = hist_lib.metrics(es, after, f)
        assert set(values) == set(hist_lib.FIELDS), name
        assert np.isnan(float(values["grad_norm"])) != has_gradient, name
        np.testing.assert_array_equal(np.asarray(m["mean"]), np.asarray(after.mean))


def _ellipsoid(x):
    return jnp.sum(jnp.arange(1.0, N + 1) ** 3 * x**2)


def test_cma_metrics_are_the_eigenvalues_of_c():
    es = ec.cma_es(N)
    params = es.default_params(eigen_gap=0.0)  # decompose C in every ask (not lazily)
    res = ec.minimize(  # 30 generations make C anisotropic
        es, _ellipsoid, jax.random.key(0), jnp.zeros(N), 0.5, params, generations=30
    )
    _, state = es.ask(jax.random.key(99), res.state)  # the axes of the current C
    m = strategy_metrics(es, state)
    eig = np.sort(np.linalg.eigvalsh(np.asarray(state.C)))
    np.testing.assert_allclose(np.asarray(m["axis_lengths"]), np.sqrt(eig), rtol=1e-6)
    assert float(m["axis_ratio"]) == pytest.approx(np.sqrt(eig[-1] / eig[0]), rel=1e-6)
    np.testing.assert_allclose(
        np.asarray(m["stds"]), float(state.sigma) * np.sqrt(np.diag(np.asarray(state.C)))
    )
    assert float(m["sigma"]) == float(state.sigma)


def test_a_strategy_built_without_metrics_falls_back_to_its_summary():
    es = ec.sep_cma_es(N)._replace(metrics=None)
    _, _, f, after = _one_generation(es, 5)
    assert es.summary is not None
    values = hist_lib.metrics(es, after, f)
    expected = summary_metrics(es.summary, after)
    for name, value in expected.items():
        np.testing.assert_array_equal(np.asarray(values[name]), np.asarray(value))


def test_minimize_records_gradient_norm_and_step_size():
    es = ec.open_es(N, LAM, learning_rate=LR)
    res = ec.minimize(
        es, _sphere, jax.random.key(1), jnp.zeros(N), 0.3, generations=20, history=True
    )
    h = hist_lib.rows(res.history)
    assert int(res.history.count) == 20
    assert h["grad_norm"][19] == float(res.state.grad_norm)
    assert h["step_size"][19] == float(res.state.step_size)
    assert np.all(h["grad_norm"][:20] > 0) and np.all(h["step_size"][:20] > 0)
    assert np.all(h["step_size"][:20] < 3 * LR * np.sqrt(N))  # Adam's steps are ~lr per axis
    cma = ec.minimize(
        ec.cma_es(N), _sphere, jax.random.key(1), jnp.zeros(N), 0.3, generations=5, history=True
    )
    assert np.all(np.isnan(hist_lib.rows(cma.history)["grad_norm"]))
