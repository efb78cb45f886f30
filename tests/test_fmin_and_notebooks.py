"""The host driver (the notebooks run in a kernel: tests/test_notebooks.py)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import evojax_cma as ec


def _rosen(x):
    return float(np.sum(100.0 * (x[:-1] ** 2 - x[1:]) ** 2 + (x[:-1] - 1.0) ** 2))


def test_fmin_like_pycma_fmin2(capsys):
    xbest, res = ec.fmin(_rosen, 0.1 * np.ones(6), 0.1, {"ftarget": 1e-10, "seed": 3})
    assert res.fbest <= 1e-10 and res.stop == ["ftarget"]
    np.testing.assert_allclose(xbest, np.ones(6), atol=1e-4)
    assert res.history.shape == (res.iterations, 5)
    out = capsys.readouterr().out
    assert "Iterat #Fevals" in out and "termination on ['ftarget']" in out


def test_fmin_vectorized_and_executor_give_the_same_run():
    opts = {"verbose": 0, "maxiter": 50, "seed": 1}
    _, a = ec.fmin(_rosen, np.zeros(4), 0.3, opts)
    _, b = ec.fmin(lambda X: [_rosen(x) for x in X], np.zeros(4), 0.3, opts, batched=True)
    with ThreadPoolExecutor(2) as pool:
        _, c = ec.fmin(_rosen, np.zeros(4), 0.3, opts, executor=pool)
    assert a.fbest == b.fbest == c.fbest and a.iterations == 50
