"""Network parameters as pytrees: same numbers as flat vectors, Flax and Equinox models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.pytree import on_pytree, param_spec


def _tree(dtype=jnp.float32):
    return {
        "layer1": {"w": jnp.linspace(-1, 1, 6, dtype=dtype).reshape(2, 3), "b": jnp.ones(3, dtype)},
        "out": (jnp.full((3,), 0.5, dtype),),
    }


def _loss(params):
    return (
        jnp.sum((params["layer1"]["w"] - 0.3) ** 2)
        + jnp.sum(params["layer1"]["b"] ** 2)
        + jnp.sum((params["out"][0] + 1.0) ** 2)
    )


def test_ravel_unravel_round_trip_keeps_structure_and_dtype():
    tree = _tree()
    spec = param_spec(tree)
    assert spec.size == 12 and spec.dtype == "float32"
    x = spec.ravel(tree)
    back = spec.unravel(x)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    batch = spec.unravel_population(jnp.stack([x, 2 * x]))
    assert batch["layer1"]["w"].shape == (2, 2, 3)
    np.testing.assert_array_equal(batch["out"][0][1], 2 * tree["out"][0])
    assert param_spec(_tree()) == spec and hash(param_spec(_tree())) == hash(spec)


@pytest.mark.parametrize("name", ["cma_es", "open_es"])
def test_a_pytree_run_equals_the_flat_run(name):
    """Same keys, same numbers: the objective of a pytree through on_pytree, jit and vmap."""
    tree = _tree(jnp.float64)
    spec = param_spec(tree)
    es = ec.cma_es(spec.size) if name == "cma_es" else ec.open_es(spec.size, 20)
    x0 = spec.ravel(tree)

    def flat_loss(x):  # jax.tree orders dict keys: layer1/b, layer1/w, out
        b, w, out = x[:3], x[3:9].reshape(2, 3), x[9:]
        return jnp.sum((w - 0.3) ** 2) + jnp.sum(b**2) + jnp.sum((out + 1.0) ** 2)

    keys = jax.random.split(jax.random.key(0), 3)
    opts = {"maxiter": 40}
    flat = jax.vmap(lambda k: ec.minimize(es, flat_loss, k, x0, 0.3, options=opts))(keys)
    tree_run = jax.vmap(
        lambda k: ec.minimize(es, on_pytree(_loss, spec), k, x0, 0.3, options=opts)
    )(keys)
    np.testing.assert_allclose(tree_run.best_f, flat.best_f, rtol=1e-12)
    np.testing.assert_allclose(tree_run.state.mean, flat.state.mean, rtol=1e-12)
    best = spec.unravel(tree_run.best_x[0])
    assert jax.tree.structure(best) == jax.tree.structure(tree)
    assert _loss(best) == pytest.approx(float(tree_run.best_f[0]))


def test_the_wrapper_is_a_value_so_the_loop_does_not_recompile():
    spec = param_spec(_tree())
    traces = []

    def loss(params):
        traces.append(1)
        return _loss(params)

    es = ec.cma_es(spec.size)
    x0 = spec.ravel(_tree())
    counts = []
    for _ in range(2):
        ec.minimize(es, on_pytree(loss, spec), jax.random.key(0), x0, 0.3, options={"maxiter": 3})
        counts.append(len(traces))
    assert counts[1] == counts[0], counts


def test_a_chunked_population_of_pytrees_has_the_unchunked_fitness():
    tree = _tree(jnp.float64)
    spec = param_spec(tree)
    es = ec.open_es(spec.size, 40, chunk_size=10)
    state = es.init(jax.random.key(0), spec.ravel(tree), 0.1)
    key = jax.random.key(1)
    population, _ = es.ask(key, state)
    whole = jax.vmap(on_pytree(_loss, spec))(population)
    chunked = ec.chunked_fitness(es, on_pytree(_loss, spec), key, state)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    batched_loss = on_pytree(jax.vmap(_loss), spec, batched=True)
    chunked_batched = ec.chunked_fitness(es, batched_loss, key, state, batched=True)
    np.testing.assert_allclose(chunked_batched, whole, rtol=1e-12)


@pytest.mark.parametrize(
    "tree, error, match",
    [
        ({"w": jnp.ones(3), "steps": jnp.arange(3)}, TypeError, r"\['steps'\].*floating"),
        (
            {"w": jnp.ones(3, jnp.float32), "b": jnp.ones(2, jnp.float64)},
            TypeError,
            "one floating dtype",
        ),
        ({}, ValueError, "empty pytree"),
        ({"w": jnp.array([1.0, jnp.nan])}, ValueError, r"\['w'\] has non-finite"),
        ({"w": jnp.ones(2), "flag": True}, TypeError, r"\['flag'\]"),
    ],
    ids=["integer-leaf", "mixed-dtypes", "empty", "nan-leaf", "python-bool"],
)
def test_bad_parameter_trees_name_the_leaf(tree, error, match):
    with pytest.raises(error, match=match):
        param_spec(tree)


def test_population_of_the_wrong_width_is_refused():
    spec = param_spec(_tree())
    with pytest.raises(ValueError, match=r"\(rows, 12\)"):
        spec.unravel_population(jnp.zeros((4, 11)))


def _fit(es, loss, spec, params):
    """150 generations of `es` on a network's loss, from its initial parameters."""
    x0 = spec.ravel(params)
    return ec.minimize(es, on_pytree(loss, spec), jax.random.key(1), x0, 0.3, generations=150)


def test_flax_linen_model():
    nn = pytest.importorskip("flax.linen", reason="flax is an optional test dependency")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(jnp.tanh(nn.Dense(8)(x)))

    model = MLP()
    xs = jnp.linspace(-1, 1, 16)[:, None]
    ys = jnp.sin(3 * xs)
    params = model.init(jax.random.key(0), xs)
    spec = param_spec(params)

    def loss(p):
        return jnp.mean((model.apply(p, xs) - ys) ** 2)

    res = _fit(ec.cma_es(spec.size), loss, spec, params)
    assert float(res.best_f) < 0.5 * float(loss(params))
    best = spec.unravel(res.best_x)
    assert jax.tree.structure(best) == jax.tree.structure(params)
    assert float(loss(best)) == pytest.approx(float(res.best_f), rel=1e-5)


def test_equinox_model():
    eqx = pytest.importorskip("equinox", reason="equinox is an optional test dependency")
    model = eqx.nn.MLP(1, 1, 8, 1, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_array)
    spec = param_spec(params)
    xs = jnp.linspace(-1, 1, 16)[:, None]
    ys = jnp.sin(3 * xs)

    def loss(p):
        net = eqx.combine(p, static)
        return jnp.mean((jax.vmap(net)(xs) - ys) ** 2)

    res = _fit(ec.sep_cma_es(spec.size), loss, spec, params)
    assert float(res.best_f) < 0.5 * float(loss(params))
    best = eqx.combine(spec.unravel(res.best_x), static)
    assert isinstance(best, eqx.nn.MLP)
