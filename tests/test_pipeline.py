"""The evaluation pipeline: transformations as values, one generation step, no recompiles."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.run import host


def _counting(fn):
    """`fn` with a counter of how often JAX traces it (once per compilation)."""
    traces = []

    def counted(*args):
        traces.append(1)
        return fn(*args)

    return counted, traces


def _sphere(x):
    return jnp.sum((x - 0.5) ** 2)


def _ring(x):
    return jnp.asarray([0.25 - x[0] ** 2])


def test_transformations_are_values():
    assert ec.scaling(2.0) == ec.scaling(2.0)
    assert hash(ec.scaling([1.0, 2.0])) == hash(ec.scaling(np.array([1.0, 2.0])))
    assert ec.scaling(2.0) != ec.scaling(3.0)
    assert ec.chain(ec.scaling(2.0), ec.chain(ec.log_scale([True, False]))) == ec.chain(
        ec.scaling(2.0), ec.log_scale([True, False])
    )
    assert ec.noise_handler([1, 1, 5]) == ec.noise_handler([1, 1, 5])
    assert ec.bound_transform(0.0, 1.0) != ec.bound_penalty(0.0, 1.0)
    with pytest.raises(TypeError, match="chain takes transformations"):
        ec.chain(lambda x: x)


@pytest.mark.parametrize(
    "kwargs",
    [
        lambda: {"encoding": ec.chain(ec.scaling(2.0), ec.log_scale([True, False, False, False]))},
        lambda: {"bounds": (np.zeros(4), [2.0] * 4)},
        lambda: {"bounds": (-1.0, 2.0), "bound_handler": "penalty"},
        lambda: {"constraints": _ring},
        lambda: {"noise_handling": ec.noise_handler([1, 1, 3])},
    ],
    ids=["encoding", "bound_transform", "bound_penalty", "constraints", "noise"],
)
def test_equal_settings_do_not_recompile(kwargs):
    """A second call with equal (freshly built) settings reuses the compiled loop."""
    fn, traces = _counting(_sphere)
    es = ec.cma_es(4)
    results, counts = [], []
    for _ in range(2):
        results.append(
            ec.minimize(
                ec.cma_es(4),
                fn,
                jax.random.key(0),
                jnp.ones(4),
                0.3,
                options={"maxiter": 5},
                **kwargs(),
            )
        )
        counts.append(len(traces))
    assert counts[0] >= 1 and counts[1] == counts[0], f"traces after each call: {counts}"
    np.testing.assert_array_equal(results[0].best_f, results[1].best_f)
    assert es == ec.cma_es(4)


def test_encoding_of_another_dimension_is_refused():
    with pytest.raises(ValueError, match=re.escape("shape (10,) for a 10-dimensional")):
        ec.minimize(
            ec.cma_es(10),
            _sphere,
            jax.random.key(0),
            jnp.ones(10),
            1.0,
            encoding=ec.scaling([1.0, 100.0]),
        )


def test_a_function_where_a_vector_is_expected():
    x0 = ec.uniform_x0(-jnp.ones(3), jnp.ones(3))
    with pytest.raises(TypeError, match="got a function"):
        ec.minimize(ec.cma_es(3), _sphere, jax.random.key(0), x0, 1.0)


def test_x0_functions_take_a_key_in_every_driver():
    x0 = ec.uniform_x0(-jnp.ones(3), jnp.ones(3))
    opts = {"maxfevals": 300, "verbose": 0}
    _, res = ec.fmin(lambda x: float(np.sum(x**2)), x0, 0.5, opts, restarts=1)
    assert res.evals >= 300
    restarted = ec.minimize_restarts(
        _sphere, jax.random.key(0), x0, 0.5, {"maxfevals": 300}, restarts=1
    )
    assert int(restarted.evals) >= 300
    with pytest.raises(TypeError, match="PRNG key"):
        ec.fmin(lambda x: float(np.sum(x**2)), lambda: np.zeros(3), 0.5, opts)


def _sphere_np(x):
    return float(np.sum(x**2))


def test_fmin_reuses_compiled_steps():
    opts = {"ftarget": 1e-10, "verbose": 0}
    ec.fmin(_sphere_np, np.ones(5), 0.5, opts)
    before = host._propose._cache_size(), host._incorporate._cache_size()
    _, res = ec.fmin(_sphere_np, 2 * np.ones(5), 0.3, {**opts, "seed": 4})
    assert res.stop == ["ftarget"]
    assert (host._propose._cache_size(), host._incorporate._cache_size()) == before


def test_fmin_restarts_compile_each_popsize_once():
    def rastrigin(x):
        return float(10 * x.size + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))

    before = host._propose._cache_size()
    _, res = ec.fmin(
        rastrigin, np.ones(3) * 3, 2.0, {"maxfevals": 4000, "verbose": 0, "seed": 1}, restarts=5
    )
    grown = host._propose._cache_size() - before
    assert res.runs >= 3
    assert grown <= res.runs  # at most one compilation per distinct population size
    again = host._propose._cache_size()
    ec.fmin(
        rastrigin, np.ones(3) * 3, 2.0, {"maxfevals": 4000, "verbose": 0, "seed": 1}, restarts=5
    )
    assert host._propose._cache_size() == again


def test_fmin_computes_in_float64_without_touching_the_global_setting():
    def rosen(x):
        return float(np.sum(100.0 * (x[:-1] ** 2 - x[1:]) ** 2 + (x[:-1] - 1.0) ** 2))

    with jax.enable_x64(False):
        _, res = ec.fmin(rosen, [0.1] * 10, 0.1, {"ftarget": 1e-10, "verbose": 0})
        assert jnp.ones(1).dtype == jnp.float32  # the caller's setting is kept
    assert res.stop == ["ftarget"] and res.fbest <= 1e-10
    assert res.state.mean.dtype == jnp.float64
    with jax.enable_x64(False):
        _, res32 = ec.fmin(rosen, [0.1] * 4, 0.1, {"maxiter": 5, "verbose": 0}, dtype="float32")
    assert res32.state.mean.dtype == jnp.float32
    with pytest.raises(ValueError, match="dtype must be one of"):
        ec.fmin(rosen, [0.1] * 4, 0.1, dtype="float16")


@pytest.mark.parametrize(
    "strategy", [ec.open_es(4, 8), ec.sep_cma_es(4), ec.lm_ma_es(4), ec.variational(4, 8)]
)
def test_fmin_displays_any_strategy(strategy, capsys):
    _, res = ec.fmin(_sphere_np, np.ones(4), 0.5, {"maxiter": 3}, strategy=strategy)
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s+\d+\s", line)]
    assert len(rows) == 3
    min_std, max_std = float(rows[-1][5]), float(rows[-1][6])
    assert 0 < min_std <= max_std
    assert res.iterations == 3


def test_fmin_objective_returning_none_is_an_error():
    with pytest.raises(TypeError, match="real numbers"):
        ec.fmin(lambda x: None, np.ones(3), 0.5, {"verbose": 0})
