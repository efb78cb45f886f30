"""IPOP/BIPOP-CMA-ES vs pycma's fmin2(restarts=9[, bipop=True]), same budgets, same run.

Success rate (best f < target within the budget), median evaluations of the successful
seeds and wall time, on Rastrigin, Schwefel and Griewank (pycma's ``ff`` definitions and
domains), x0 uniform in the domain for every run. Ours: all seeds vmapped in one jit
(masked populations up to ``max_popsize``; the CPU cost of the masking is in the wall
time). Writes ``results/restarts_<device>.json``.

    python benchmarks/restarts.py [--seeds 10] [--dims 10 20] [--budget-per-dim 2e4]
"""

from __future__ import annotations

import argparse
import time
import warnings

import cma
import jax
import jax.numpy as jnp
import numpy as np

import evojax_cma as ec
from evojax_cma.problems import griewank, rastrigin, schwefel

from common import write

jax.config.update("jax_enable_x64", True)

PROBLEMS = {
    # name: (ours, pycma's, domain, sigma0, target)
    "rastrigin": (rastrigin, cma.ff.rastrigin, 5.0, 2.0, 1e-8),
    "griewank": (griewank, cma.ff.griewank, 5.0, 2.5, 1e-8),
    "schwefel": (schwefel, cma.ff.schwefelmult, 500.0, 250.0, 1e-2),
}


def ours(fn, n, half, sigma0, target, budget, bipop, seeds):
    x0 = ec.uniform_x0(-half * jnp.ones(n), half * jnp.ones(n))
    opts = {"ftarget": target, "maxfevals": budget}
    run = jax.jit(
        jax.vmap(lambda k: ec.minimize_restarts(fn, k, x0, sigma0, opts, restarts=9, bipop=bipop))
    )
    t0 = time.perf_counter()
    res = jax.block_until_ready(run(jax.random.split(jax.random.key(0), seeds)))
    return np.asarray(res.best_f) < target, np.asarray(res.evals), time.perf_counter() - t0


def pycma(fn, n, half, sigma0, target, budget, bipop, seeds):
    success, evals = [], []
    t0 = time.perf_counter()
    for seed in range(seeds):
        draw = np.random.default_rng(seed).uniform
        opts = {"ftarget": target, "maxfevals": budget, "verbose": -9, "seed": seed + 1}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, es = cma.fmin2(
                fn, lambda draw=draw: draw(-half, half, n), sigma0, opts, restarts=9, bipop=bipop
            )
        success.append(es.result.fbest < target)
        evals.append(es.result.evaluations)
    return np.asarray(success), np.asarray(evals), time.perf_counter() - t0


def summary(success, evals, seconds):
    return dict(
        success=int(success.sum()),
        seeds=int(success.size),
        median_evals_success=float(np.median(evals[success])) if success.any() else None,
        seconds=round(seconds, 2),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--budget-per-dim", type=float, default=2e4, help="budget = this * n")
    args = parser.parse_args()
    rows = []
    for n in args.dims:
        for name, (f_ours, f_ref, half, sigma0, target) in PROBLEMS.items():
            for bipop in (False, True):
                budget = args.budget_per_dim * n
                setting = (n, half, sigma0, target, budget, bipop, args.seeds)
                a = summary(*ours(f_ours, *setting))
                b = summary(*pycma(f_ref, *setting))
                row = dict(problem=name, n=n, budget=budget, method="BIPOP" if bipop else "IPOP")
                row.update(ours=a, pycma=b)
                print(row, flush=True)
                rows.append(row)
                write(
                    f"restarts_{jax.devices()[0].platform}",
                    dict(budget_per_dim=args.budget_per_dim, rows=rows),
                )


if __name__ == "__main__":
    main()
