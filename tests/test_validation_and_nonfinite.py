"""Bad input fails early with a clear error; non-finite fitness never poisons the state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.problems import sphere


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(num_dims=0), ValueError, "num_dims"),
        (dict(num_dims=2.5), TypeError, "num_dims"),
        (dict(num_dims=3, popsize=1), ValueError, "popsize"),
        (dict(num_dims=3, popsize=True), TypeError, "popsize"),
        (dict(num_dims=3, tolfunn=1e-3), TypeError, "tolfunn"),
        (dict(num_dims=3, preset="pycmaa"), ValueError, "preset"),
        (dict(num_dims=3, active="yes"), TypeError, "active"),
    ],
)
def test_bad_strategy_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ec.cma_es(**kwargs)


@pytest.mark.parametrize(
    "x0, sigma0, match",
    [
        (np.ones(4), 0.5, r"x0 must have shape \(3,\)"),
        (np.ones((3, 1)), 0.5, "x0 must have shape"),
        (np.array([1.0, np.nan, 0.0]), 0.5, "x0 must be finite"),
        (np.array([1.0, np.inf, 0.0]), 0.5, "x0 must be finite"),
        (np.ones(3), 0.0, "sigma0 must be finite and > 0"),
        (np.ones(3), -1.0, "sigma0 must be finite and > 0"),
        (np.ones(3), np.nan, "sigma0 must be finite and > 0"),
        (np.ones(3), np.ones(2), "sigma0 must be a scalar"),
    ],
)
def test_bad_init_arguments(x0, sigma0, match):
    es = ec.cma_es(3)
    with pytest.raises(ValueError, match=match):
        es.init(jax.random.key(0), x0, sigma0)
    with pytest.raises(ValueError, match=match):
        ec.minimize(es, sphere, jax.random.key(0), x0, sigma0)
    if np.shape(x0) != (4,):  # for fmin, a 4-vector is a valid 4-D start
        with pytest.raises(ValueError, match=match.split(" ")[0] + " must"):
            ec.fmin(lambda x: float(np.sum(x**2)), x0, sigma0, {"verbose": 0})


def test_bad_tell_shapes_and_options():
    es = ec.cma_es(3, 6)
    state = es.init(None, np.zeros(3), 1.0)
    x, state = es.ask(jax.random.key(0), state)
    with pytest.raises(ValueError, match=r"fitness must have shape \(6,\)"):
        es.tell(state, x, jnp.zeros(5))
    with pytest.raises(ValueError, match=r"population must have shape \(6, 3\)"):
        es.tell(state, x[:, :2], jnp.zeros(6))
    with pytest.raises(TypeError, match="maxfeval"):
        ec.minimize(es, sphere, jax.random.key(0), np.zeros(3), 1.0, options={"maxfeval": 10})
    with pytest.raises(TypeError, match="params must be a CMAParams"):
        es.init(None, np.zeros(3), 1.0, params={"c1": 0.1})
    bad = es.default_params()._replace(weights=jnp.ones(4))
    with pytest.raises(ValueError, match=r"params.weights must have shape \(6,\)"):
        es.init(None, np.zeros(3), 1.0, params=bad)
    with pytest.raises(TypeError, match="popsiz"):
        ec.fmin(sphere, np.zeros(3), 1.0, {"popsiz": 10})


def test_fmin_rejects_objective_with_wrong_output_shape():
    with pytest.raises(ValueError, match="one scalar per point"):
        ec.fmin(lambda X: np.zeros(2), np.zeros(3), 1.0, {"verbose": 0}, batched=True)


def test_ranking_rule_for_non_finite_and_ties():
    f = jnp.array([3.0, jnp.nan, 1.0, -jnp.inf, 1.0, jnp.inf, 0.5])
    order, sorted_f = ec.rank_order(f)
    assert order.tolist() == [6, 2, 4, 0, 1, 3, 5]  # finite first, ties and non-finite by index
    assert np.isinf(np.asarray(sorted_f[4:])).all() and np.isfinite(np.asarray(sorted_f[:4])).all()
    r = ec.ranks(f)
    assert sorted(r.tolist()) == list(range(7))  # each rank once: weights sum unchanged
    c = ec.centered_ranks(f)  # utilities: tied values (here the non-finite ones) share
    assert float(c.min()) == -0.5 and abs(float(c.sum())) < 1e-12
    assert float(c[1]) == float(c[3]) == float(c[5]) == float(c.max())
    assert abs(float(c.max()) - (5 / 6 - 0.5)) < 1e-12
    assert float(c[2]) == float(c[4])


def test_ties_do_not_change_the_update_mass():
    # All-equal fitness: the update is that of random selection; the weights still sum as
    # without ties, so C keeps its scale (no extra decay or growth from duplicated weights).
    es = ec.cma_es(4, 8)
    state = es.init(None, np.zeros(4), 1.0)
    x, state = es.ask(jax.random.key(0), state)
    tied = es.tell(state, x, jnp.zeros(8))
    order_free = es.tell(state, x, jnp.arange(8.0))  # the same order as the stable sort
    np.testing.assert_array_equal(np.asarray(tied.C), np.asarray(order_free.C))
    np.testing.assert_array_equal(np.asarray(tied.mean), np.asarray(order_free.mean))


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf, -jnp.inf])
def test_non_finite_fitness_is_ranked_worst_and_state_stays_finite(bad):
    es = ec.cma_es(5, 10)

    def fn(x):
        # A third of the space returns a non-finite value.
        return jnp.where(x[0] > 0.3, bad, sphere(x))

    res = ec.minimize(es, fn, jax.random.key(0), jnp.ones(5) * 0.1, 0.5, options={"ftarget": 1e-8})
    for leaf in (
        res.state.mean,
        res.state.sigma,
        res.state.C,
        res.state.p_sigma,
        res.state.p_c,
        res.state.best_x,
    ):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(res.state.best_f) <= 1e-8

    # The rule is "ranked worst": replacing those values by 1e300 (worse than every finite
    # value met here) gives the same ranking, hence the same run.
    ref = ec.minimize(
        es,
        lambda x: jnp.where(x[0] > 0.3, 1e300, sphere(x)),
        jax.random.key(0),
        jnp.ones(5) * 0.1,
        0.5,
        options={"ftarget": 1e-8},
    )
    np.testing.assert_array_equal(np.asarray(res.state.mean), np.asarray(ref.state.mean))
    np.testing.assert_array_equal(np.asarray(res.state.C), np.asarray(ref.state.C))


def test_all_nan_generation_keeps_state_finite():
    es = ec.cma_es(3, 6)
    state = es.init(None, np.zeros(3), 1.0)
    for g in range(5):
        x, state = es.ask(jax.random.key(g), state)
        state = es.tell(state, x, jnp.full(6, jnp.nan))
    assert np.all(np.isfinite(np.asarray(state.C))) and np.isfinite(float(state.sigma))
    assert float(state.best_f) == np.inf
