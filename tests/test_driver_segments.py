"""minimize's history, segments, progress, checkpoints, resume, generations= and maximize=."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.history import rows


def _sphere(x):
    return jnp.sum((x - 0.3) ** 2)


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_history_is_recorded_in_the_compiled_loop():
    es = ec.cma_es(4)
    res = ec.minimize(
        es,
        _sphere,
        jax.random.key(0),
        jnp.ones(4),
        0.5,
        options={"ftarget": 1e-10},
        history={"stride": 2, "capacity": 500},
    )
    h = rows(res.history)
    n = int(res.history.count)
    assert n == int(res.state.generation) // 2
    np.testing.assert_array_equal(h["generation"][:n], np.arange(2, 2 * n + 1, 2))
    assert h["f_best_so_far"][n - 1] >= float(res.state.best_f)
    assert np.all(np.diff(h["evals"][:n]) == 2 * es.popsize)
    batch = jax.vmap(
        lambda k: ec.minimize(
            es, _sphere, k, jnp.ones(4), 0.5, options={"maxiter": 30}, history=True
        )
    )(jax.random.split(jax.random.key(1), 3))
    assert rows(batch.history)["sigma"].shape == (3, 1000)
    assert ec.minimize(es, _sphere, jax.random.key(0), jnp.ones(4), 0.5).history is None


@pytest.mark.parametrize("name", ["cma_es", "sep_cma_es", "open_es"])
def test_segments_and_checkpoints_are_bit_identical_to_one_call(name, tmp_path):
    es = {"cma_es": ec.cma_es(5), "sep_cma_es": ec.sep_cma_es(5), "open_es": ec.open_es(5, 10)}[
        name
    ]
    args = (es, _sphere, jax.random.key(3), jnp.ones(5), 0.5)
    straight = ec.minimize(*args, generations=60, history=True)
    path = tmp_path / "run.npz"
    segmented = ec.minimize(
        *args, generations=60, history=True, segment=7, checkpoint=path, checkpoint_every=14
    )
    _assert_same(straight, segmented)
    first = ec.minimize(*args, generations=25, history=True, checkpoint=path)
    assert int(first.state.generation) == 25
    resumed = ec.minimize(*args, generations=60, history=True, resume=path)
    _assert_same(straight, resumed)


def test_progress_bar_and_its_limits(capsys):
    es = ec.cma_es(3)
    res = ec.minimize(
        es, _sphere, jax.random.key(0), jnp.ones(3), 0.5, generations=30, progress=True, segment=10
    )
    assert int(res.state.generation) == 30
    err = capsys.readouterr().err  # tqdm writes to stderr: "30gen [..., best_f=..., sigma=...]"
    assert "30gen" in err and "best_f=" in err and "sigma=" in err
    with pytest.raises(ValueError, match="top-level call"):
        jax.vmap(
            lambda k: ec.minimize(es, _sphere, k, jnp.ones(3), 0.5, generations=5, progress=True)
        )(jax.random.split(jax.random.key(0), 2))


class _Bar:
    """A stand-in for tqdm that keeps every position and postfix it was given."""

    def __init__(self):
        self.n, self.seen, self.postfix, self.closed = 0, [], [], False

    def update(self, k):
        self.n += k
        self.seen.append(self.n)

    def set_postfix(self, refresh=True, **postfix):
        self.postfix.append(postfix)

    def close(self):
        self.closed = True


@pytest.mark.parametrize("segment", [7, 10])
def test_progress_reports_every_segment_from_inside_one_call(monkeypatch, segment):
    from evojax_cma.run import segments

    bar = _Bar()
    monkeypatch.setattr(segments, "progress_bar", lambda enabled: bar if enabled else None)
    args = (ec.cma_es(4), _sphere, jax.random.key(5), jnp.ones(4), 0.5)
    quiet = ec.minimize(*args, generations=33, history=True)
    shown = ec.minimize(*args, generations=33, history=True, progress=True, segment=segment)
    _assert_same(quiet, shown)  # reporting does not change the run
    expected = [*range(segment, 33, segment), 33]
    assert bar.seen == expected and bar.closed
    assert [p["evals"] for p in bar.postfix] == [8 * g for g in expected]  # λ = 8 at n = 4
    assert float(bar.postfix[-1]["best_f"]) == pytest.approx(float(shown.best_f), rel=1e-3)


class _InterruptedBar(_Bar):
    """A bar on which the user presses Ctrl-C at the second report."""

    def update(self, k):
        super().update(k)
        if len(self.seen) == 2:
            raise KeyboardInterrupt


def test_ctrl_c_and_a_second_bar(monkeypatch):
    from evojax_cma.run import segments

    args = (ec.cma_es(4), _sphere, jax.random.key(5), jnp.ones(4), 0.5)
    bar = _InterruptedBar()
    monkeypatch.setattr(segments, "progress_bar", lambda enabled: bar if enabled else None)
    # Ctrl-C reaches the user as KeyboardInterrupt (not as XLA's wrapped runtime error),
    # at the end of the segment it interrupted, and the bar is closed.
    with pytest.raises(KeyboardInterrupt):
        ec.minimize(*args, generations=50, progress=True, segment=10)
    assert bar.seen == [10, 20] and bar.closed
    # One bar per process: a call with a bar while another shows one is refused.
    monkeypatch.setattr(segments, "_BAR", [object()])
    with pytest.raises(RuntimeError, match="another call in this process"):
        ec.minimize(*args, generations=5, progress=True)
    assert int(ec.minimize(*args, generations=5).state.generation) == 5


def test_generations_runs_exactly_n_whatever_the_fitness():
    flat = ec.minimize(
        ec.open_es(6, 12),
        lambda x: jnp.float32(1.0) + 0 * x[0],
        jax.random.key(0),
        jnp.zeros(6),
        0.1,
        generations=40,
    )
    assert int(flat.state.generation) == 40
    assert ec.stop_reasons(flat.stop_flags) == ["maxiter"]
    default = ec.minimize(
        ec.cma_es(6), lambda x: 0 * x[0] + 1.0, jax.random.key(0), jnp.zeros(6), 0.1
    )
    assert int(default.state.generation) < 40  # pycma's criteria stop a flat run early
    with pytest.raises(ValueError, match="either generations= or options="):
        ec.minimize(
            ec.cma_es(2),
            _sphere,
            jax.random.key(0),
            jnp.ones(2),
            0.1,
            options={"maxiter": 3},
            generations=3,
        )


def test_maximize_reports_the_objective_in_its_own_sign():
    reward = lambda x: 5.0 - jnp.sum((x - 1.0) ** 2)  # noqa: E731
    res = ec.minimize(
        ec.cma_es(3),
        reward,
        jax.random.key(0),
        jnp.zeros(3),
        0.5,
        maximize=True,
        options={"maxiter": 200},
    )
    assert float(res.best_f) == pytest.approx(5.0, abs=1e-6)
    np.testing.assert_allclose(res.best_x, 1.0, atol=1e-3)
