"""`evojax_cma.sweep`: the table against runs done alone, batching, reliability, errors."""

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.history import rows as history_rows
from evojax_cma.sweep import run_bytes, sweep

N = 3
ES = ec.cma_es(N)
OPTIONS = {"ftarget": 1e-8, "maxiter": 80, "tolfacupx": 1e300}
GRID = {"c1": [0.05, 0.2], "c_mu": [0.05, 0.1]}


def objective(x):
    """The sphere, NaN where x[0] > 50 (a start there sees NaN everywhere)."""
    return jnp.where(x[0] > 50.0, jnp.nan, jnp.sum(x**2))


def alone(row, x0, sigma0, fields=("c1", "c_mu")):
    """The same run as a table row, done by minimize alone."""
    params = ES.default_params(**{f: float(row[f]) for f in fields})
    key = jax.random.key(int(row["seed"]))
    return ec.minimize(ES, objective, key, jnp.asarray(x0), sigma0, params, OPTIONS)


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def loop_sweep():
    return sweep(
        ES,
        objective,
        np.full(N, 0.8),
        0.5,
        GRID,
        seeds=[3, 11],
        options=OPTIONS,
        layout="loop",
        history={"capacity": 80},
    )


def test_rows_are_the_grid_times_seeds_and_equal_runs_alone(loop_sweep):
    t = loop_sweep.table
    expected = [(c1, cm, s) for c1, cm in itertools.product(*GRID.values()) for s in (3, 11)]
    got = list(zip(t["c1"].tolist(), t["c_mu"].tolist(), t["seed"].tolist(), strict=True))
    np.testing.assert_allclose(np.array(got), np.array(expected))
    assert len({(r["best_f"], r["generations"]) for r in t}) == len(t)  # the settings matter
    for i, row in enumerate(t):
        single = alone(row, np.full(N, 0.8), 0.5)
        # one compiled run of the same program: bit for bit (layout="loop")
        assert row["best_f"] == float(single.best_f)
        assert row["evals"] == int(single.state.evals)
        assert row["generations"] == int(single.state.generation)
        assert row["stop"] == ",".join(ec.stop_reasons(single.stop_flags))
        np.testing.assert_array_equal(loop_sweep.results.state.mean[i], single.state.mean)
        # f at the final mean, against NumPy
        mean = np.asarray(loop_sweep.results.state.mean[i])
        np.testing.assert_allclose(row["f_mean"], np.sum(mean**2), rtol=1e-12)
    assert set(t["stop"]) <= {"ftarget", "maxiter"} and "ftarget" in set(t["stop"])


def test_history_recorded_for_every_run(loop_sweep):
    h = loop_sweep.results.history
    assert h.sigma.shape == (8, 80)
    data = history_rows(h)
    for i, row in enumerate(loop_sweep.table):
        written = data["generation"][i] >= 0
        assert written.sum() == row["generations"]
        assert data["f_best_so_far"][i][written][-1] == loop_sweep.results.state.best_f[i]


def test_cells_pandas_and_heatmap(loop_sweep):
    values, xs, ys = loop_sweep.cells("c1", "c_mu", "best_f")
    t = loop_sweep.table
    np.testing.assert_array_equal(xs, GRID["c1"])
    np.testing.assert_array_equal(ys, GRID["c_mu"])
    for (i, cm), (j, c1) in itertools.product(enumerate(ys), enumerate(xs)):
        hit = (t["c1"] == c1) & (t["c_mu"] == cm)
        assert hit.sum() == 2
        assert values[i, j] == np.median(t["best_f"][hit])
    fig = loop_sweep.heatmap("c1", "c_mu", "best_f")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), np.log10(values))
    pd = pytest.importorskip("pandas")
    frame = loop_sweep.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(t.dtype.names)
    np.testing.assert_array_equal(frame["best_f"].to_numpy(), t["best_f"])
    with pytest.raises(ValueError, match="not a column"):
        loop_sweep.cells("c1", "learning_rate")


# NaN, early stops and maxiter caps in one vmapped batch; starts paired (x0s[i], sigma0s[i])
X0S = np.array([[0.8] * N, [100.0] * N, [5.0] * N])
SIGMA0S = np.array([0.5, 0.5, 1e-4])


@pytest.fixture(scope="module")
def mixed_sweep():
    return sweep(
        ES, objective, None, None, {"c1": [0.05, 0.2]}, seeds=2, x0s=X0S, sigma0s=SIGMA0S,
        options=OPTIONS, layout="vmap",
    )  # fmt: skip


def test_mixed_batch_rows_equal_runs_alone(mixed_sweep):
    t = mixed_sweep.table
    assert len(t) == 12 and mixed_sweep.layout == "vmap"
    for i, row in enumerate(t):
        k = row["x0_index"]
        assert row["sigma0"] == SIGMA0S[k]
        single = alone(row, X0S[k], float(SIGMA0S[k]), fields=("c1",))
        assert row["stop"] == ",".join(ec.stop_reasons(single.stop_flags)), i
        assert row["generations"] == int(single.state.generation)
        assert row["evals"] == int(single.state.evals)
        # batched kernels may round differently from a single run (float64 here)
        np.testing.assert_allclose(row["best_f"], float(single.best_f), rtol=1e-9)
        scale = np.max(np.abs(single.state.mean))  # to rounding, relative to the vector
        np.testing.assert_allclose(
            mixed_sweep.results.state.mean[i], single.state.mean, 0, 1e-9 * scale
        )
    by_start = {k: set(t["stop"][t["x0_index"] == k]) for k in range(3)}
    assert by_start == {0: {"ftarget"}, 1: {"tolflatfitness"}, 2: {"maxiter"}}
    nan_rows = t[t["x0_index"] == 1]
    assert np.all(np.isnan(nan_rows["f_mean"])) and np.all(np.isinf(nan_rows["best_f"]))
    assert np.all(np.isfinite(mixed_sweep.results.state.mean))  # NaN f never reaches a state


def test_batches_equal_one_call_bit_for_bit(mixed_sweep):
    """Batches of 5 (the last one padded) and a memory budget of 4 runs: the same bits.

    Each run's arithmetic is the same per-run kernels whatever the batch holds (finished
    runs are frozen and never trigger another run's eigendecomposition), so on CPU the
    batching does not change a bit. Other backends may round batched kernels differently.
    """
    kwargs: dict[str, Any] = dict(seeds=2, x0s=X0S, sigma0s=SIGMA0S, options=OPTIONS, layout="vmap")
    batched = sweep(ES, objective, None, None, {"c1": [0.05, 0.2]}, batch_size=5, **kwargs)
    assert batched.batch_size == 5
    assert_trees_equal(batched.results, mixed_sweep.results)
    for name in mixed_sweep.table.dtype.names:
        np.testing.assert_array_equal(batched.table[name], mixed_sweep.table[name])
    per_run = run_bytes(ES, objective, X0S[0], SIGMA0S[0], options=OPTIONS)
    assert per_run > 2 * 8 * (N * N + N)  # at least the covariance and mean, twice
    budget = sweep(ES, objective, None, None, {"c1": [0.05, 0.2]}, memory_budget=5 * per_run,
                   **kwargs)  # fmt: skip
    assert budget.batch_size == 5
    assert_trees_equal(budget.results, mixed_sweep.results)


def test_random_sample_of_the_grid():
    grid = {"c1": [0.01, 0.05, 0.1, 0.2], "c_mu": [0.05, 0.1, 0.2]}
    res = sweep(ES, objective, np.full(N, 0.8), 0.5, grid, sample=5, sample_seed=1,
                options=OPTIONS)  # fmt: skip
    assert res.layout == ("loop" if jax.default_backend() == "cpu" else "vmap")  # "auto"
    pairs = set(zip(res.table["c1"].tolist(), res.table["c_mu"].tolist(), strict=True))
    assert len(pairs) == 5 and pairs <= set(itertools.product(*grid.values()))
    again = sweep(ES, objective, np.full(N, 0.8), 0.5, grid, sample=5, sample_seed=1,
                  options=OPTIONS)  # fmt: skip
    np.testing.assert_array_equal(again.table["c1"], res.table["c1"])


def test_open_es_learning_rate_by_name_map_layout():
    es = ec.open_es(4, 8)
    res = sweep(es, objective, np.full(4, 0.5), 0.1, {"learning_rate": [0.01, 0.1]},
                layout="map", generations=15)  # fmt: skip
    for i, lr in enumerate([0.01, 0.1]):
        params = es.default_params(learning_rate=lr)
        single = ec.minimize(es, objective, jax.random.key(0), jnp.full(4, 0.5), 0.1, params,
                             generations=15)  # fmt: skip
        np.testing.assert_allclose(res.results.state.mean[i], single.state.mean, rtol=1e-9)
    assert np.all(res.table["generations"] == 15)


def test_data_is_passed_to_every_run_and_to_f_mean():
    target = jnp.array([0.3, -0.2, 0.1])

    def shifted(x, data):
        return jnp.sum((x - data) ** 2)

    res = sweep(ES, shifted, np.ones(N), 0.5, {"c1": [0.05, 0.2]}, options=OPTIONS,
                data=target, layout="loop")  # fmt: skip
    for i, row in enumerate(res.table):
        params = ES.default_params(c1=float(row["c1"]))
        single = ec.minimize(ES, shifted, jax.random.key(0), jnp.ones(N), 0.5, params, OPTIONS,
                             data=target)  # fmt: skip
        assert row["best_f"] == float(single.best_f) and row["stop"] == "ftarget"
        mean = np.asarray(res.results.state.mean[i])
        np.testing.assert_allclose(row["f_mean"], np.sum((mean - np.asarray(target)) ** 2))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(grid={"not_a_field": [1.0]}), TypeError, r"not_a_field.*valid names are.*c_mu"),
        (dict(grid={"sigma0": [1.0]}), TypeError, "sigma0s="),
        (dict(grid={"c1": [[0.1, 0.2]]}), ValueError, r"1-D sequence of scalars"),
        (dict(grid={"weights": [0.1]}), ValueError, r"weights must have shape"),
        (dict(grid={"c1": []}), ValueError, "empty"),
        (dict(grid={"c1": [0.5], "c_mu": [0.6]}), ValueError, r"sweep grid.*c1 \+ c_mu"),
        (dict(grid={"c1": [0.1, 0.5], "c_mu": [0.6]}), ValueError, r"grid point.*'c1': 0.5"),
        (dict(grid={"c1": ["a"]}), TypeError, "real numbers"),
        (dict(x0s=np.ones((3, N)), sigma0s=[0.1, 0.2]), ValueError, "same length"),
        (dict(x0s=np.ones((3, N + 1))), ValueError, "x0s must have shape"),
        (dict(sigma0s=[0.1, -1.0]), ValueError, "sigma0"),
        (dict(sigma0=None), ValueError, "sigma0s"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(memory_budget=10), ValueError, "less than one run"),
        (dict(batch_size=2, memory_budget=10**9), ValueError, "not both"),
        (dict(seeds=0), ValueError, "seeds"),
        (dict(seeds=[]), ValueError, "seeds"),
        (dict(sample=9), ValueError, "at most"),
        (dict(layout="pmap"), ValueError, "layout"),
        (dict(progress=True), TypeError, "progress"),
    ],
)
def test_bad_input_is_refused_before_running(kwargs, error, match):
    args = {"x0": np.ones(N), "sigma0": 0.5, "grid": {"c1": [0.1]}, **kwargs}
    with pytest.raises(error, match=match):
        sweep(ES, objective, options=OPTIONS, **args)
