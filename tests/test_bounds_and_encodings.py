"""Box constraints (BoundTransform, BoundPenalty) and encodings, against pycma."""

import warnings

import cma
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cma.boundary_handler import BoundTransform

import evojax_cma as ec
from evojax_cma.problems import rosenbrock, sphere


@pytest.mark.parametrize(
    "lower, upper",
    [
        ([-1.0, 0.0, -np.inf, 2.0, -1e3], [1.0, 5.0, 3.0, np.inf, 1e-3]),
        ([0.1, -7.0, 1e-7, -np.inf, 3.0], [0.1 + 1e-7, 7.0, 1.0, 0.0, 1e5]),
    ],
)
def test_bound_transform_is_pycmas(lower, upper):
    ours = ec.bound_transform(np.asarray(lower), np.asarray(upper))
    ref = BoundTransform([lower, upper])
    rng = np.random.default_rng(0)
    for scale in (0.1, 1.0, 10.0, 1e4):
        for _ in range(20):
            x = scale * rng.standard_normal(5) / np.sqrt(rng.random(5))
            got = np.asarray(ours.decode(jnp.asarray(x)))
            np.testing.assert_allclose(got, ref.repair(x), rtol=1e-12, atol=1e-12)
            assert np.all(got >= lower) and np.all(got <= upper)
            # encode inverts decode on the box (as pycma's inverse does)
            np.testing.assert_allclose(ours.decode(ours.encode(got)), got, rtol=1e-9, atol=1e-9)


def _shifted_sphere(x):
    return jnp.sum((x - 2.0) ** 2)


@pytest.mark.parametrize("handler", ["transform", "penalty"])
def test_optimum_outside_the_box_converges_to_the_boundary(handler):
    """The unconstrained optimum 2 lies outside [-1, 1]: the solution is x = 1."""
    es = ec.cma_es(6)
    runs = jax.jit(
        jax.vmap(
            lambda k: ec.minimize(
                es,
                _shifted_sphere,
                k,
                jnp.zeros(6),
                0.5,
                options={"maxfevals": 6000.0},
                bounds=(-1.0, 1.0),
                bound_handler=handler,
            )
        )
    )(jax.random.split(jax.random.key(0), 5))
    np.testing.assert_allclose(runs.best_x, 1.0, atol=1e-4)
    np.testing.assert_allclose(runs.best_f, 6.0, rtol=1e-6)


@pytest.mark.parametrize("handler", ["transform", "penalty"])
def test_fmin_only_evaluates_points_in_the_box(handler):
    lower, upper = np.array([-1.0, 0.5, -np.inf, 0.0]), np.array([0.5, 2.0, 0.0, np.inf])

    def f(x):
        assert np.all(x >= lower) and np.all(x <= upper), x
        return float(np.sum((x - 3.0) ** 2))

    opts = {"bounds": [lower, upper], "BoundaryHandler": handler, "maxfevals": 3000}
    x, res = ec.fmin(f, np.array([0.0, 1.0, -1.0, 1.0]), 0.5, {**opts, "verbose": 0})
    np.testing.assert_allclose(x, [0.5, 2.0, 0.0, 3.0], atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("handler", ["transform", "penalty"])
def test_rosenbrock_in_a_box_vs_pycma(handler):
    """Rosenbrock on [-2, 0.5]^5 (the optimum 1 is cut off): same constrained optimum as
    pycma with the same handler, over 10 seeds each; medians of f agree to 1e-6."""
    n, bounds = 5, ([-2.0] * 5, [0.5] * 5)
    ours = ec.minimize  # jitted, vmapped below
    es = ec.cma_es(n)
    res = jax.jit(
        jax.vmap(
            lambda k: ours(
                es,
                rosenbrock,
                k,
                jnp.zeros(n),
                0.5,
                options={"maxfevals": 2e4},
                bounds=bounds,
                bound_handler=handler,
            )
        )
    )(jax.random.split(jax.random.key(1), 10))
    ref = []
    handler_cls = {"transform": cma.BoundTransform, "penalty": cma.BoundPenalty}[handler]
    for seed in range(10):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, es_ref = cma.fmin2(
                cma.ff.rosen,
                np.zeros(n),
                0.5,
                {
                    "bounds": bounds,
                    "BoundaryHandler": handler_cls,
                    "maxfevals": 2e4,
                    "verbose": -9,
                    "seed": seed + 1,
                },
            )
        ref.append(es_ref.result.fbest)
    assert np.all(np.asarray(res.best_x) <= 0.5) and np.all(np.asarray(res.best_x) >= -2.0)
    np.testing.assert_allclose(np.median(res.best_f), np.median(ref), rtol=1e-6)


def test_log_scale_and_scaling_encodings():
    """A learning-rate-like parameter spanning decades and a badly scaled one."""
    target = np.array([1e-4, 3e2])

    def f(p):  # the objective sees phenotypes: p[0] > 0 over decades, p[1] ~ 1e2
        return (jnp.log10(p[0]) - jnp.log10(target[0])) ** 2 + ((p[1] - target[1]) / 100.0) ** 2

    enc = ec.chain(ec.scaling([1.0, 100.0]), ec.log_scale([True, False]))
    x0 = jnp.array([1e-1, 50.0])
    np.testing.assert_allclose(enc.decode(enc.encode(x0)), x0, rtol=1e-12)
    res = ec.minimize(
        ec.cma_es(2), f, jax.random.key(0), x0, 1.0, options={"ftarget": 1e-12}, encoding=enc
    )
    np.testing.assert_allclose(res.best_x, target, rtol=1e-5)
    np.testing.assert_allclose(enc.decode(res.state.mean), res.best_x, rtol=1e-3)


def test_bad_bounds_and_handlers_are_rejected():
    es = ec.cma_es(3)
    args = (es, sphere, jax.random.key(0), jnp.zeros(3), 0.5)
    with pytest.raises(ValueError, match="lower bounds must be < upper"):
        ec.minimize(*args, bounds=(1.0, 1.0))
    with pytest.raises(ValueError, match="NaN"):
        ec.minimize(*args, bounds=(np.nan, 1.0))
    with pytest.raises(ValueError, match="shape"):
        ec.minimize(*args, bounds=(np.zeros(2), np.ones(2)))
    with pytest.raises(TypeError, match="pair"):
        ec.minimize(*args, bounds=np.ones(3))
    with pytest.raises(ValueError, match="bound_handler"):
        ec.minimize(*args, bounds=(0.0, 1.0), bound_handler="clip")
    with pytest.raises(ValueError, match="CMA-family"):
        ec.minimize(
            ec.open_es(3, 8),
            sphere,
            jax.random.key(0),
            jnp.zeros(3),
            0.5,
            bounds=(-1.0, 1.0),
            bound_handler="penalty",
        )
    with pytest.raises(ValueError, match="scale"):
        ec.scaling([1.0, 0.0])
    with pytest.warns(UserWarning, match="outside the bounds"):
        res = ec.minimize(
            es,
            sphere,
            jax.random.key(0),
            jnp.array([5.0, 0.0, 0.0]),
            0.5,
            options={"maxiter": 5.0},
            bounds=(-1.0, 1.0),
        )
    assert np.all(np.abs(np.asarray(res.best_x)) <= 1.0)


@pytest.mark.parametrize("handler", ["transform", "penalty"])
def test_restarts_respect_bounds(handler):
    x0 = ec.uniform_x0(-jnp.ones(4), jnp.ones(4))
    res = ec.minimize_restarts(
        _shifted_sphere,
        jax.random.key(2),
        x0,
        0.5,
        {"maxfevals": 4000.0},
        restarts=2,
        bounds=(-1.0, 1.0),
        bound_handler=handler,
    )
    np.testing.assert_allclose(res.best_x, 1.0, atol=1e-3)
    assert int(res.evals) >= 4000
