"""IPOP/BIPOP restarts: masked populations, pycma's schedule, success rates vs pycma."""

import warnings

import cma
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.problems import rastrigin, schwefel
from evojax_cma.run.restarts import first_run, plan_next_run, restart_config


def test_masked_population_is_a_smaller_population():
    """Rows from params.popsize on change nothing: same state as a CMA-ES of that λ."""
    n, lam, cap = 5, 7, 19
    small, big = ec.cma_es(n, lam), ec.cma_es(n, lam, max_popsize=cap)
    s_small = small.init(None, jnp.ones(n), 0.7)
    s_big = big.init(None, jnp.ones(n), 0.7, big.default_params(lam))
    rng = np.random.default_rng(0)
    for g in range(30):
        x, s_small = small.ask(jax.random.key(g), s_small)
        _, s_big = big.ask(jax.random.key(g), s_big)
        f = jnp.sum(x**2 * jnp.arange(1, n + 1)[None, :], axis=1)
        # padding rows: garbage points with the best fitness must still be ignored
        pad = jnp.asarray(rng.normal(size=(cap - lam, n)))
        s_small = small.tell(s_small, x, f)
        s_big = big.tell(s_big, jnp.vstack([x, pad]), jnp.concatenate([f, -jnp.ones(cap - lam)]))
    for name in ("mean", "sigma", "C", "p_sigma", "p_c", "evals", "best_f"):
        np.testing.assert_allclose(getattr(s_big, name), getattr(s_small, name), rtol=1e-12)


def test_traced_popsize_gives_the_numpy_constants():
    es = ec.cma_es(8, 10, max_popsize=80)
    for lam in (10, 17, 80):
        traced = jax.jit(es.default_params)(jnp.asarray(lam))
        for a, b in zip(traced, es.default_params(lam), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_ipop_schedule_is_pycmas():
    config = restart_config(10, None, restarts=3)
    assert config.max_popsize == 10 * 2**3
    schedule, lams = first_run(config), [10]
    while True:
        schedule, factor, _, exhausted = plan_next_run(config, schedule, 1000, jax.random.key(0))
        if exhausted:
            break
        assert float(factor) == 1.0
        lams.append(int(schedule.popsize))
    assert lams == [10, 20, 40, 80]


def test_bipop_schedule_alternates_by_budget():
    config = restart_config(10, 10, restarts=4, bipop=True)
    schedule, key, runs = first_run(config), jax.random.key(1), []
    for _ in range(30):
        key, k = jax.random.split(key)
        lam = int(schedule.popsize)
        evals = 50 * lam  # a run costs 50 generations
        schedule, factor, maxiter_cap, exhausted = plan_next_run(config, schedule, evals, k)
        if exhausted:
            break
        runs.append((bool(schedule.small), int(schedule.popsize), float(factor), maxiter_cap))
    large = [lam for small, lam, _, _ in runs if not small]
    assert large == [20, 40, 80, 160]  # IPOP's sequence for the large runs
    for small, lam, factor, cap in runs:
        if small:
            assert 10 <= lam <= 160 and 0.01 <= factor <= 1 and np.isfinite(cap)
    assert sum(small for small, *_ in runs) >= 4  # small runs fill the budget in between
    assert float(schedule.small_evals) <= float(schedule.large_evals) + 50 * 160


def test_vmapped_runs_restart_on_their_own_schedule():
    """Runs of one vmapped batch end and restart independently (per-run options here)."""
    x0 = ec.uniform_x0(-5 * jnp.ones(4), 5 * jnp.ones(4))

    def run(key, maxiter):
        opts = {"maxiter": maxiter, "tolfun": 0.0, "tolfunhist": 0.0, "tolflatfitness": 1e9}
        return ec.minimize_restarts(rastrigin, key, x0, 2.0, opts, restarts=2)

    keys = jax.random.split(jax.random.key(3), 2)
    maxiters = jnp.asarray([20.0, 35.0])
    batch = jax.jit(jax.vmap(run))(keys, maxiters)
    lam0 = ec.cma_es(4).popsize
    expected = [int(m) * lam0 * (1 + 2 + 4) for m in maxiters]  # maxiter ends each of 3 runs
    np.testing.assert_array_equal(batch.evals, expected)
    np.testing.assert_array_equal(batch.runs, [3, 3])
    for i in range(2):
        single = jax.jit(run)(keys[i], maxiters[i])
        assert int(single.evals) == expected[i]
        np.testing.assert_allclose(single.best_f, batch.best_f[i], rtol=1e-6)


def _ours(fn, n, lo, hi, sigma0, target, budget, bipop, seeds, seed=0, restarts=9):
    x0 = ec.uniform_x0(lo * jnp.ones(n), hi * jnp.ones(n))
    opts = {"ftarget": target, "maxfevals": budget}
    res = jax.jit(
        jax.vmap(
            lambda k: ec.minimize_restarts(fn, k, x0, sigma0, opts, restarts=restarts, bipop=bipop)
        )
    )(jax.random.split(jax.random.key(seed), seeds))
    return np.asarray(res.best_f) < target, np.asarray(res.evals)


def _pycma(fn, n, lo, hi, sigma0, target, budget, bipop, seeds, restarts=9):
    success, evals = [], []
    for seed in range(seeds):
        draw = np.random.default_rng(seed).uniform
        opts = {"ftarget": target, "maxfevals": budget, "verbose": -9, "seed": seed + 1}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, es = cma.fmin2(
                fn, lambda draw=draw: draw(lo, hi, n), sigma0, opts, restarts=restarts, bipop=bipop
            )
        success.append(es.result.fbest < target)
        evals.append(es.result.evaluations)
    return np.asarray(success), np.asarray(evals)


@pytest.mark.slow  # ~45 s: IPOP on 10-D Rastrigin over several seeds
def test_ipop_solves_rastrigin_10d():
    """The issue's bar: f < 1e-8 in at least 9 of 10 seeds within 2e5 evaluations."""
    success, evals = _ours(rastrigin, 10, -5, 5, 2.0, 1e-8, 2e5, False, 10)
    assert success.sum() >= 9, (success, evals)
    assert np.all(evals[success] <= 2e5 + 10 * 2**9)


@pytest.mark.slow
@pytest.mark.parametrize("bipop", [False, True], ids=["ipop", "bipop"])
def test_restarts_vs_pycma_on_rastrigin_10d(bipop):
    """Success rate and median evaluations next to pycma's fmin2(restarts=9), same run.

    Tolerances: at most 2 fewer successes of 10 than pycma, and a median number of
    evaluations (over successful seeds) within a factor of 2 of pycma's. With a per-run
    success probability p, the number of runs is geometric, so 10 seeds leave the median
    uncertain by about that factor.
    """
    args = (rastrigin, 10, -5, 5, 2.0, 1e-8, 2e5, bipop, 10)
    ours, ours_evals = _ours(*args)
    ref, ref_evals = _pycma(cma.ff.rastrigin, *args[1:])
    print(
        f"ours {ours.sum()}/10 median {np.median(ours_evals[ours])}; "
        f"pycma {ref.sum()}/10 median {np.median(ref_evals[ref])}"
    )
    assert ours.sum() >= 9 and ours.sum() >= ref.sum() - 2
    ratio = np.median(ours_evals[ours]) / np.median(ref_evals[ref])
    assert 0.5 <= ratio <= 2.0, ratio


@pytest.mark.slow
def test_bipop_vs_pycma_on_schwefel_5d():
    """Weak global structure: BIPOP on Schwefel's function, next to pycma's BIPOP.

    1e5 evaluations, target 1e-2 (the global basin), success rates over 40 seeds (ours)
    and 20 (pycma, slower): ours at most 0.3 below pycma's (about 2.2 standard errors of
    the difference at rates near 0.5; both measured near 0.45 in development).
    ``restarts=6`` for both: within 1e5 evaluations no run gets further, and it keeps
    our masked population (``max_popsize``) at 512 rows instead of 4096.
    """
    args = (schwefel, 5, -500, 500, 250.0, 1e-2, 1e5, True)
    ours, _ = _ours(*args, 40, restarts=6)
    ref, _ = _pycma(cma.ff.schwefelmult, *args[1:], 20, restarts=6)
    print(f"ours {ours.mean():.2f}, pycma {ref.mean():.2f}")
    assert ours.mean() >= ref.mean() - 0.3


def test_fmin_restarts_like_pycma():
    rng = np.random.default_rng(0)
    f = cma.ff.rastrigin
    x, res = ec.fmin(
        f, lambda key: rng.uniform(-5, 5, 6), 2.0, {"ftarget": 1e-8, "verbose": 0}, restarts=6
    )
    assert res.fbest < 1e-8 and res.runs >= 1 and res.stop == ["ftarget"]
    assert f(x) == pytest.approx(res.fbest)
    _, one = ec.fmin(f, np.ones(6) * 3, 2.0, {"maxfevals": 3000, "verbose": 0}, restarts=9)
    assert 3000 <= one.evals <= 3000 + 6 * 2**9 and one.runs >= 2


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"restarts": -1}, ValueError),
        ({"restarts": 1.5}, TypeError),
        ({"incpopsize": 0.5}, ValueError),
        ({"bipop": -1.0}, ValueError),
        ({"max_popsize": 3}, ValueError),
    ],
)
def test_bad_restart_settings_are_rejected(kwargs, error):
    with pytest.raises(error):
        ec.minimize_restarts(rastrigin, jax.random.key(0), jnp.ones(3), 1.0, **kwargs)


def test_bad_x0_and_options_are_rejected():
    with pytest.raises(ValueError, match="x0"):
        ec.minimize_restarts(rastrigin, jax.random.key(0), jnp.ones((2, 3)), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        ec.minimize_restarts(rastrigin, jax.random.key(0), jnp.ones(3), 1.0, {"ftarget": np.nan})
    with pytest.raises(ValueError, match="lower"):
        ec.uniform_x0(jnp.ones(3), jnp.zeros(3))
