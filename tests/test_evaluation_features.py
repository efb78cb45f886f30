"""minimize's evaluation features: periodic test scores, keys (chunked, common, repeats), data."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.history import rows
from evojax_cma.run.evaluation import ordered
from evojax_cma.run.step import Problem, evaluate, fitness_keys

N, POP = 3, 8
ES = ec.open_es(N, POP, learning_rate=0.05)
ES_CHUNKED = ec.open_es(N, POP, learning_rate=0.05, chunk_size=4)


def _loss(x, data, key):
    """A noisy regression loss: the data's target plus Gaussian noise drawn from the key."""
    return jnp.sum((x - data["target"]) ** 2) + 0.1 * jax.random.normal(key, (), x.dtype)


def _test_loss(x, data, key):
    del key
    return jnp.sum((x - data["target"]) ** 2)


DATA = {"target": jnp.array([0.5, -0.25, 1.0])}


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _run(fn=_loss, key=None, es=ES, **kwargs):
    settings: dict[str, Any] = dict(
        keyed=True, data=DATA, generations=30, evaluate=_test_loss, evaluate_every=5
    )
    settings.update(kwargs)
    key = jax.random.key(0) if key is None else key
    return ec.minimize(es, fn, key, jnp.zeros(N), 0.1, **settings)


def test_periodic_evaluation_scores_the_mean_every_k_generations():
    res = _run(history={"stride": 5})
    ev, h = ordered(res.evaluation), rows(res.history)
    n = int(res.evaluation.count)
    assert n == 6
    np.testing.assert_array_equal(ev["generation"][:n], np.arange(5, 31, 5))
    np.testing.assert_array_equal(ev["evals"][:n], np.arange(5, 31, 5) * POP)
    assert np.all(ev["generation"][n:] == -1) and np.all(np.isnan(ev["score"][n:]))
    # the score is the test loss of the mean the history recorded at that generation
    np.testing.assert_array_equal(h["generation"][:n], ev["generation"][:n])
    want = np.sum((h["mean"][:n] - np.asarray(DATA["target"])) ** 2, axis=1)
    np.testing.assert_allclose(ev["score"][:n], want, rtol=1e-12)
    np.testing.assert_array_equal(h["f_mean"][:n], ev["score"][:n])
    i = int(np.argmin(ev["score"][:n]))
    assert float(res.evaluation.best_score) == ev["score"][i]
    assert int(res.evaluation.best_generation) == ev["generation"][i]
    np.testing.assert_array_equal(np.asarray(res.evaluation.best_x), h["mean"][i])


def test_evaluation_on_best_x_and_in_the_objectives_sign_when_maximizing():
    res = _run(evaluate_on="best", generations=20)
    last = ordered(res.evaluation)["score"][int(res.evaluation.count) - 1]
    np.testing.assert_allclose(last, np.sum((res.best_x - DATA["target"]) ** 2), rtol=1e-12)

    def reward(x, data, key):
        return -_loss(x, data, key)

    def test_reward(x, data, key):
        return -_test_loss(x, data, key)

    up = _run(reward, evaluate=test_reward, maximize=True, history={"stride": 5})
    scores = ordered(up.evaluation)["score"][:6]
    assert np.all(scores <= 0)  # rewards, in the objective's own sign
    assert float(up.evaluation.best_score) == scores.max()
    np.testing.assert_array_equal(rows(up.history)["f_mean"][:6], -scores)  # as told
    # a loss trained down, an accuracy-like score kept up: evaluate_maximize
    acc = _run(evaluate=test_reward, evaluate_maximize=True)
    assert float(acc.evaluation.best_score) == np.nanmax(ordered(acc.evaluation)["score"])


def test_evaluation_in_segments_and_resumed_is_bit_identical(tmp_path):
    straight = _run(generations=40, evaluate_every=4, history=True)
    segmented = _run(generations=40, evaluate_every=4, history=True, segment=7)
    _assert_same(straight, segmented)
    path = tmp_path / "run.npz"
    first = _run(generations=18, evaluate_every=4, history=True, checkpoint=path)
    assert int(first.evaluation.count) == 4
    resumed = _run(generations=40, evaluate_every=4, history=True, resume=path)
    _assert_same(straight, resumed)


def _episodes(x, data, key):  # a keyed test score: a noisy test
    return _test_loss(x, data, key) + 0.01 * jax.random.normal(key, (), x.dtype)


def _keyed_test_run(key):
    return _run(key=key, generations=12, evaluate=_episodes, evaluate_every=3)


def test_evaluation_under_vmap_with_a_keyed_test():
    keys = jax.random.split(jax.random.key(4), 2)
    batch = jax.vmap(_keyed_test_run)(keys)
    assert batch.evaluation.score.shape == (2, 1000)
    np.testing.assert_array_equal(np.asarray(batch.evaluation.count), [4, 4])
    for i, k in enumerate(keys):
        alone = ordered(_keyed_test_run(k).evaluation)["score"][:4]
        got = ordered(jax.tree.map(lambda a, i=i: a[i], batch.evaluation))["score"][:4]
        np.testing.assert_allclose(got, alone, rtol=1e-9)
        assert len(set(got.tolist())) == 4


def test_chunked_keyed_equals_unchunked_with_common_keys_and_repeats():
    """Per-point keys are the same in both modes, so are the f-values (and the runs)."""
    state = ES_CHUNKED.init(jax.random.key(1), jnp.zeros(N), 0.3)
    ask_key, f_key = jax.random.key(2), jax.random.key(3)
    population, _ = ES_CHUNKED.ask(ask_key, state)
    for n_repeats, common in [(1, False), (3, False), (2, True)]:
        problem = Problem(_loss, False, True, None, True, n_repeats, common)
        whole, _ = evaluate(problem, population, f_key, data=DATA)
        chunks = ec.chunked_fitness(
            ES_CHUNKED, problem, ask_key, state, fitness_key=f_key, data=DATA
        )
        np.testing.assert_allclose(np.asarray(chunks), np.asarray(whole), rtol=1e-12)
    chunked = _run(es=ES_CHUNKED, chunked=True, n_repeats=2, common_keys=True)
    plain = _run(es=ES_CHUNKED, n_repeats=2, common_keys=True)
    np.testing.assert_allclose(chunked.state.mean, plain.state.mean, rtol=1e-9)
    np.testing.assert_allclose(
        ordered(chunked.evaluation)["score"][:6], ordered(plain.evaluation)["score"][:6], 1e-9
    )
    assert int(chunked.state.evals) == 30 * POP * 2  # every call counted


def test_key_layout_common_random_numbers_and_repeats():
    """Common keys: one draw per generation for all; repeats: the mean of R draws."""

    def noise(x, key):
        return x[0] * 0 + jax.random.normal(key, (), x.dtype)

    points, key = jnp.zeros((2000, N)), jax.random.key(5)
    own = evaluate(Problem(noise, keyed=True), points, key)[0]
    np.testing.assert_array_equal(  # documented layout: row i gets split(key, rows)[i]
        own, jax.vmap(lambda k: jax.random.normal(k, (), points.dtype))(jax.random.split(key, 2000))
    )
    common = evaluate(Problem(noise, keyed=True, common_keys=True), points, key)[0]
    assert np.all(common == jax.random.normal(key, (), points.dtype))
    common3 = evaluate(Problem(noise, keyed=True, n_repeats=3, common_keys=True), points, key)[0]
    draws = jax.vmap(lambda k: jax.random.normal(k, (), points.dtype))(jax.random.split(key, 3))
    np.testing.assert_allclose(common3, np.mean(draws), rtol=1e-12)
    # independent repeats: Var(mean of R standard normals) = 1/R (2000 rows: ±10 %)
    for R in (1, 4):
        values = evaluate(Problem(noise, keyed=True, n_repeats=R), points, key)[0]
        assert abs(float(np.var(values)) * R - 1.0) < 0.1, (R, float(np.var(values)))
    keys = fitness_keys(Problem(noise, keyed=True, n_repeats=4), key, 5)
    assert keys is not None and keys.shape == (4, 5)
    assert len({tuple(np.asarray(jax.random.key_data(k))) for k in keys.ravel()}) == 20


def test_data_is_traced_no_recompile_and_vmappable():
    traces = []

    def counted(x, data, key):
        traces.append(1)
        return _loss(x, data, key)

    def run(data):
        return ec.minimize(
            ES, counted, jax.random.key(0), jnp.zeros(N), 0.1, keyed=True, data=data, generations=60
        )

    a = run(DATA)
    after_first = len(traces)
    b = run({"target": jnp.array([-1.0, 2.0, 0.0])})  # new values, same shapes
    assert after_first >= 1 and len(traces) == after_first, (after_first, len(traces))
    assert not np.allclose(a.state.mean, b.state.mean)
    assert np.linalg.norm(np.asarray(b.state.mean) - [-1.0, 2.0, 0.0]) < 0.5  # it used the data
    targets = jnp.stack([DATA["target"], jnp.array([-1.0, 2.0, 0.0])])
    swept = jax.vmap(lambda t: run({"target": t}))(targets)  # a sweep over datasets
    np.testing.assert_allclose(swept.state.mean[0], a.state.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(swept.state.mean[1], b.state.mean, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"evaluate": _test_loss, "evaluate_every": 0}, ValueError, "evaluate_every must be >= 1"),
        ({"evaluate": None, "evaluate_every": 5}, ValueError, "evaluate_every needs evaluate"),
        ({"evaluate_on": "median"}, ValueError, "evaluate_on must be one of"),
        ({"evaluate": lambda x, d, k: x}, ValueError, "evaluate must return shape"),
        ({"data": {"target": 0.5}}, TypeError, r"data\['target'\] is a float"),
        ({"n_repeats": 0}, ValueError, "n_repeats must be >= 1"),
        ({"keyed": False, "common_keys": True}, ValueError, "need keyed=True"),
        ({"keyed": False, "n_repeats": 2}, ValueError, "need keyed=True"),
    ],
)
def test_bad_input_is_refused_before_tracing(kwargs, error, match):
    traced = []

    def fn(x, data, key=None):
        traced.append(1)
        return jnp.sum(x)

    settings: dict[str, Any] = dict(keyed=True, data=DATA, generations=5, evaluate=_test_loss)
    settings.update(kwargs)
    with pytest.raises(error, match=match):
        ec.minimize(ES, fn, jax.random.key(0), jnp.zeros(N), 0.1, **settings)
    if "data" not in kwargs and kwargs.get("keyed", True):
        assert len(traced) <= 1  # at most the abstract shape check
