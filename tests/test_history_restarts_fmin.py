"""History, progress and checkpoints of the restart drivers: `minimize_restarts` and `fmin`.

References computed independently of the recorder: fmin's records against what a batched
objective saw (one call per generation: its rows, values, median, running minimum);
minimize_restarts' against IPOP's schedule (λ_k = λ0 2^(k-1), evaluations per run).
"""

import pathlib
import shutil
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma import checkpoint as ckpt
from evojax_cma.history import rows

N, LAM0 = 3, 7  # λ0 = 4 + floor(3 ln 3)
OPTIONS = {"maxfevals": 2500, "tolfun": 1e-3}  # short runs, so that restarts happen
HIST = {"capacity": 400}
X0 = ec.uniform_x0(-3 * np.ones(N), 3 * np.ones(N))


def _sphere(x):
    return jnp.sum((x - 0.3) ** 2)


def _restarts(key=None, **kw):
    key = jax.random.key(4) if key is None else key
    return ec.minimize_restarts(_sphere, key, X0, 1.0, OPTIONS, restarts=2, history=HIST, **kw)


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _check_ipop_records(h, count, runs, evals, best_f):
    """Records of one IPOP schedule against the schedule's arithmetic."""
    run, ev = h["run"][:count], h["evals"][:count]
    np.testing.assert_array_equal(h["generation"][:count], np.arange(1, count + 1))
    assert run[0] == 1 and run[-1] == runs and np.all(np.diff(run) >= 0)
    before = 0
    for k in range(1, runs + 1):
        lam = LAM0 * 2 ** (k - 1)
        e = ev[run == k]
        np.testing.assert_array_equal(e, before + lam * np.arange(1, e.size + 1))
        before = e[-1]
    assert ev[-1] == evals
    best = h["f_best_so_far"][:count]
    assert np.all(np.diff(best) <= 0) and best[-1] == best_f
    assert np.all(h["f_best_generation"][:count] >= best)


def test_minimize_restarts_records_the_whole_schedule_and_its_restarts(tmp_path):
    res = _restarts()
    count = int(res.history.count)
    h = rows(res.history)
    assert int(res.runs) == 3, "the settings should give 3 runs"
    _check_ipop_records(h, count, int(res.runs), int(res.evals), float(res.best_f))
    assert h["sigma"][count - 1] == float(res.state.sigma)
    assert np.all(np.isnan(h["grad_norm"][:count]))  # CMA-ES has no gradient
    plain = ec.minimize_restarts(_sphere, jax.random.key(4), X0, 1.0, OPTIONS, restarts=2)
    assert plain.history is None
    _assert_same(plain[:-1], res[:-1])  # recording does not change the run
    from evojax_cma.plot import plot

    fig = plot(res.history, tmp_path / "restarts.png")
    marks = [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    starts = h["generation"][:count][1:][np.diff(h["run"][:count]) != 0]
    np.testing.assert_array_equal(marks[: len(starts)], starts)
    assert len(starts) == 2


@pytest.mark.slow
def test_minimize_restarts_history_under_vmap():
    keys = jax.random.split(jax.random.key(7), 3)
    batch = jax.vmap(lambda k: _restarts(k))(keys)
    h = rows(batch.history)
    assert h["sigma"].shape == (3, HIST["capacity"])
    for i in range(3):
        one = {name: v[i] for name, v in h.items()}
        count = int(batch.history.count[i])
        runs, evals = int(batch.runs[i]), int(batch.evals[i])
        _check_ipop_records(one, count, runs, evals, float(batch.best_f[i]))


def test_minimize_restarts_resumes_bit_for_bit_mid_run_and_between_runs(tmp_path, monkeypatch):
    straight = _restarts()
    h = rows(straight.history)
    boundary = int(h["generation"][h["run"] == 1].max())  # last generation of run 1
    saved = []
    original = ckpt.save

    def keep_copies(path, tree, *, metadata=None):
        out = original(path, tree, metadata=metadata)
        copy = pathlib.Path(tmp_path) / f"copy_{len(saved)}.npz"
        shutil.copy(out, copy)
        saved.append(copy)
        return out

    monkeypatch.setattr(ckpt, "save", keep_copies)
    path = tmp_path / "restarts.npz"
    segmented = _restarts(segment=boundary, checkpoint=path)
    monkeypatch.setattr(ckpt, "save", original)
    _assert_same(straight, segmented)
    assert len(saved) >= 3
    for copy in saved[:3]:
        resumed = _restarts(resume=copy)
        _assert_same(straight, resumed)
    # the first copy is right after run 1 ended: the new run has not made a generation
    meta = ckpt.load_metadata(saved[0])
    assert meta["generation"] == boundary and meta["driver"] == "minimize_restarts"

    with pytest.raises(ValueError, match="num_dims"):
        ec.minimize_restarts(
            _sphere, jax.random.key(4), jnp.ones(4), 1.0, OPTIONS, restarts=2, resume=saved[1]
        )
    with pytest.raises(ValueError, match="schedule"):
        _restarts(bipop=True, resume=saved[1])
    with pytest.raises(ValueError, match="options"):
        ec.minimize_restarts(
            _sphere, jax.random.key(4), X0, 1.0, {"maxfevals": 900}, restarts=2, resume=saved[1]
        )
    other = tmp_path / "minimize.npz"
    ec.minimize(
        ec.open_es(N, 8), _sphere, jax.random.key(0), jnp.ones(N), 0.5, generations=3,
        checkpoint=other,
    )  # fmt: skip
    with pytest.raises(ValueError, match="another run"):
        _restarts(resume=other)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(saved[1].read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated"):
        _restarts(resume=truncated)


def test_minimize_restarts_progress_bar(capsys):
    straight = _restarts()
    shown = _restarts(progress=True, segment=25)
    _assert_same(straight, shown)
    err = capsys.readouterr().err
    assert "gen" in err and "best_f" in err


class _Logged:
    """A batched objective that keeps what it saw: one call per generation."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def __call__(self, X):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            self.fail_at = None
            raise RuntimeError("flaky")
        f = np.sum((np.asarray(X) - 0.3) ** 2, axis=1)
        self.calls.append(f)
        return f


FMIN_OPTIONS = {"maxfevals": 1500, "tolfun": 1e-3, "verbose": 0, "seed": 2}


def _fmin(fn, **kw):
    return ec.fmin(fn, np.ones(N), 0.5, FMIN_OPTIONS, restarts=2, batched=True, **kw)


def test_fmin_records_what_the_objective_saw():
    seen = _Logged()
    _, res = _fmin(seen, history={"capacity": 500})
    h, count = rows(res.history), int(res.history.count)
    calls = seen.calls
    assert count == len(calls) == res.iterations and res.runs == 3
    sizes = np.array([c.size for c in calls])
    np.testing.assert_array_equal(h["evals"][:count], np.cumsum(sizes))
    np.testing.assert_array_equal(h["f_best_generation"][:count], [c.min() for c in calls])
    np.testing.assert_allclose(
        h["f_median_generation"][:count], [np.median(c) for c in calls], rtol=1e-15
    )
    best = np.minimum.accumulate([c.min() for c in calls])
    np.testing.assert_array_equal(h["f_best_so_far"][:count], best)
    # restarts double λ (IPOP): the run changes exactly where the batches grow
    np.testing.assert_array_equal(h["run"][:count], 1 + np.log2(sizes / LAM0).astype(int))
    assert h["sigma"][count - 1] == float(res.state.sigma)
    np.testing.assert_array_equal(h["mean"][count - 1], np.asarray(res.state.mean))
    _, plain = _fmin(_Logged())  # the pycma-style rows; the run is the same
    assert isinstance(plain.history, np.ndarray) and plain.evals == res.evals
    np.testing.assert_array_equal(plain.history[:, 1], h["evals"][:count])
    np.testing.assert_array_equal(plain.history[:, 3], h["sigma"][:count])


def test_fmin_history_survives_an_error_and_resume():
    _, reference = _fmin(_Logged(), history=True)
    flaky = _Logged(fail_at=40)
    with pytest.raises(ec.FminError) as caught:
        _fmin(flaky, history=True)
    so_far = caught.value.result.history
    assert int(so_far.count) == 40
    _, resumed = _fmin(flaky, history=True, resume=caught.value.resume)
    _assert_same(reference.history, resumed.history)
    with pytest.raises(ValueError, match="history"):
        _fmin(flaky, history={"capacity": 10}, resume=caught.value.resume)


def test_fmin_is_quiet_by_default_and_keeps_verbose(capsys):
    ec.fmin(_Logged(), np.ones(N), 0.5, {**FMIN_OPTIONS, "maxfevals": 100}, batched=True)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    opts = {**FMIN_OPTIONS, "maxfevals": 100, "verbose": 1, "verb_disp": 5}
    ec.fmin(_Logged(), np.ones(N), 0.5, opts, progress=True, batched=True)
    out = capsys.readouterr()
    assert "Iterat #Fevals" in out.out and "\n     5 " in out.out
    assert "gen" in out.err and "best_f" in out.err
    with pytest.raises(TypeError, match="history"):
        ec.fmin(_Logged(), np.ones(N), 0.5, FMIN_OPTIONS, history=cast(Any, "yes"))
