"""History recorded in the compiled loop, pycma's four panels, and exact checkpoints."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma import checkpoint
from evojax_cma import history as hist_lib

STRATEGIES = {
    "cma_es": lambda: ec.cma_es(5),
    "sep_cma_es": lambda: ec.sep_cma_es(5),
    "lm_ma_es": lambda: ec.lm_ma_es(5),
    "open_es": lambda: ec.open_es(5, 10),
    "variational": lambda: ec.variational(5, 10),
}


def _loop(es, state, key, hist, generations):
    """``generations`` of ask/tell on the sphere, recording into `hist` (key carried)."""

    def step(carry, _):
        state, key, hist = carry
        key, k = jax.random.split(key)
        x, state = es.ask(k, state)
        f = jnp.sum(x**2, axis=1)
        state = es.tell(state, x, f)
        return (state, key, hist_lib.record(hist, hist_lib.metrics(es, state, f))), None

    (state, key, hist), _ = jax.lax.scan(step, (state, key, hist), None, length=generations)
    return state, key, hist


def _start(es, key):
    state = es.init(key, jnp.ones(5), 0.5)
    return state, hist_lib.init_history(5, state.mean.dtype, capacity=40, stride=3)


def test_history_records_every_stride_and_keeps_the_last_ones():
    es = ec.cma_es(5)
    state, hist = _start(es, jax.random.key(0))
    state, _, hist = jax.jit(lambda s, h: _loop(es, s, jax.random.key(1), h, 150))(state, hist)
    rows = hist_lib.rows(hist)
    assert int(hist.count) == 50  # 150 generations, one record every 3rd
    np.testing.assert_array_equal(rows["generation"], np.arange(33, 151, 3))  # the last 40
    assert np.all(np.diff(rows["f_best_so_far"]) <= 0)
    assert rows["f_best_so_far"][-1] == pytest.approx(float(state.best_f))
    assert rows["sigma"][-1] == pytest.approx(float(state.sigma))
    np.testing.assert_allclose(rows["mean"][-1], np.asarray(state.mean))
    assert np.all(rows["axis_ratio"] >= 1)


def test_history_under_vmap_and_the_batch_plot(tmp_path):
    es = ec.sep_cma_es(5)

    def run(key):
        state, hist = _start(es, key)
        return _loop(es, state, key, hist, 60)[2]

    hist = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(2), 4))
    rows = hist_lib.rows(hist)
    assert rows["sigma"].shape == (4, 40) and rows["stds"].shape == (4, 40, 5)
    assert np.all(rows["generation"][:, :20] == np.arange(3, 61, 3))
    from evojax_cma.plot import plot

    fig = plot(hist, tmp_path / "batch.png")
    assert (tmp_path / "batch.png").stat().st_size > 10_000
    ax_f, ax_x, ax_s, ax_d = fig.axes[:4]
    best = ax_f.lines[0].get_ydata()
    np.testing.assert_allclose(best, np.nanmedian(rows["f_best_so_far"][:, :20], axis=0))
    sigma_line = [line for line in ax_s.lines if line.get_label() == "sigma"][0]
    np.testing.assert_allclose(
        sigma_line.get_ydata(), np.nanmedian(rows["sigma"][:, :20], axis=0), rtol=1e-6
    )
    assert len(ax_x.lines) == 5 and len(ax_d.lines) == 5
    assert ax_s.get_yscale() == "log" and ax_d.get_yscale() == "log"


def test_plot_of_one_run_shows_its_data(tmp_path):
    es = ec.cma_es(5)
    state, hist = _start(es, jax.random.key(3))
    _, _, hist = _loop(es, state, jax.random.key(4), hist, 30)
    from evojax_cma.plot import heatmap, plot

    fig = plot(hist, tmp_path / "one.png", title="cma")
    rows = hist_lib.rows(hist)
    n = int(hist.count)
    for line, coordinate in zip(fig.axes[1].lines, range(5), strict=True):
        np.testing.assert_allclose(line.get_ydata(), rows["mean"][:n, coordinate], rtol=1e-6)
    heat = heatmap(
        np.arange(6.0).reshape(2, 3) + 1,
        [1e-3, 1e-2, 1e-1],
        [0.1, 1.0],
        x_label="learning_rate",
        y_label="sigma0",
        path=tmp_path / "heat.png",
    )
    np.testing.assert_allclose(
        heat.axes[0].images[0].get_array(), np.log10(np.arange(1.0, 7).reshape(2, 3))
    )
    with pytest.raises(ValueError, match="y by x"):
        heatmap(np.zeros((3, 2)), [1, 2, 3], [1, 2], x_label="a", y_label="b")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_resume_from_a_checkpoint_is_bit_identical(name, tmp_path):
    es = STRATEGIES[name]()
    run = jax.jit(lambda s, k, h, g: _loop(es, s, k, h, g), static_argnums=3)
    state, hist = _start(es, jax.random.key(5))
    straight = run(state, jax.random.key(6), hist, 40)

    state, key, hist = run(state, jax.random.key(6), hist, 15)
    path = checkpoint.save(
        tmp_path / "run.npz",
        {"state": state, "key": key, "history": hist},
        metadata={"strategy": es.name, "generation": 15},
    )
    template = {"state": _start(es, jax.random.key(0))[0], "key": key, "history": hist}
    loaded = checkpoint.load(path, like=template)
    assert checkpoint.load_metadata(path) == {"strategy": es.name, "generation": 15}
    resumed = run(loaded["state"], loaded["key"], loaded["history"], 25)
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_wrong_or_broken_checkpoint_is_a_clear_error(tmp_path):
    cma = ec.cma_es(5)
    state = cma.init(jax.random.key(0), jnp.ones(5), 0.5)
    path = checkpoint.save(tmp_path / "cma.npz", {"state": state})
    before = path.read_bytes()
    other = ec.sep_cma_es(5).init(jax.random.key(0), jnp.ones(5), 0.5)
    with pytest.raises(ValueError, match="another structure"):
        checkpoint.load(path, like={"state": other})
    wider = ec.cma_es(6).init(jax.random.key(0), jnp.ones(6), 0.5)
    with pytest.raises(ValueError, match="another dimension"):
        checkpoint.load(path, like={"state": wider})
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(before[: len(before) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        checkpoint.load(truncated, like={"state": state})
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load(garbage, like={"state": state})
    # a failing save (an unserialisable leaf) leaves the existing file untouched
    with pytest.raises(TypeError):
        checkpoint.save(path, {"state": state, "bad": object()})
    assert path.read_bytes() == before
    assert not list(pathlib.Path(tmp_path).glob("*.tmp"))
