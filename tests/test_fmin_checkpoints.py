"""fmin's checkpoint files: written every k generations, resumed exactly, refused when foreign."""

import numpy as np
import pytest

import evojax_cma as ec


def rastrigin(x):
    x = np.asarray(x, dtype=float)
    return float(10 * x.size + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


OPTIONS = {"seed": 3, "verbose": 0, "maxfevals": 3000}


class PowerCutError(Exception):
    pass


def test_resume_from_file_equals_the_uninterrupted_run(tmp_path):
    path = tmp_path / "run.npz"
    kw = dict(restarts=2, checkpoint=path, checkpoint_every=7, history=True)
    _, full = ec.fmin(rastrigin, [2.0] * 3, 1.0, dict(OPTIONS), **kw)
    assert full.runs >= 2  # the schedule moved on: a later run's state was saved

    calls = {"n": 0}

    def crashes_later(x):  # an interruption the objective does not expect
        calls["n"] += 1
        if calls["n"] > 0.6 * full.evals:
            raise PowerCutError("power cut")
        return rastrigin(x)

    path.unlink()
    with pytest.raises(ec.FminError):
        ec.fmin(crashes_later, [2.0] * 3, 1.0, dict(OPTIONS), **kw)
    saved = ec.checkpoint.load_metadata(path)["generation"]
    assert 0 < saved < full.iterations and saved % 7 == 0

    _, resumed = ec.fmin(rastrigin, [2.0] * 3, 1.0, dict(OPTIONS), resume=path, **kw)
    assert resumed.evals == full.evals and resumed.runs == full.runs
    assert resumed.fbest == full.fbest
    np.testing.assert_array_equal(resumed.xbest, full.xbest)
    np.testing.assert_array_equal(
        np.asarray(resumed.history.f_best_so_far), np.asarray(full.history.f_best_so_far)
    )


def test_a_file_of_other_settings_or_a_truncated_file_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    ec.fmin(
        rastrigin, [2.0] * 3, 1.0, dict(OPTIONS, maxiter=12), checkpoint=path, checkpoint_every=5
    )
    with pytest.raises(ValueError, match="sigma0"):
        ec.fmin(rastrigin, [2.0] * 3, 0.5, dict(OPTIONS, maxiter=12), resume=path)
    with pytest.raises(ValueError, match="restarts"):
        ec.fmin(rastrigin, [2.0] * 3, 1.0, dict(OPTIONS, maxiter=12), resume=path, restarts=1)
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        ec.fmin(rastrigin, [2.0] * 3, 1.0, dict(OPTIONS, maxiter=12), resume=truncated)
    other = tmp_path / "other.npz"
    ec.checkpoint.save(other, {"a": np.zeros(2)}, metadata={"driver": "minimize"})
    with pytest.raises(ValueError, match="not a checkpoint of fmin"):
        ec.fmin(rastrigin, [2.0] * 3, 1.0, dict(OPTIONS, maxiter=12), resume=other)


def test_checkpoint_arguments_are_checked():
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint"):
        ec.fmin(rastrigin, [2.0] * 3, 1.0, dict(OPTIONS), checkpoint_every=5)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        ec.fmin(rastrigin, [2.0] * 3, 1.0, dict(OPTIONS), checkpoint=5)
    with pytest.raises(ValueError, match="checkpoint_every"):
        ec.fmin(rastrigin, [2.0] * 3, 1.0, dict(OPTIONS), checkpoint="x.npz", checkpoint_every=0)
