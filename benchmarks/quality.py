"""Evaluations to f < 1e-8 on Hansen's table, against pycma on the same objective.

x0 = 0.1 ones, sigma0 = 0.1; n = 10 (default lambda and lambda = 100), n = 3, n = 30.
Target: every median within +-5 % of pycma's. Usage: python benchmarks/quality.py [seeds]
"""

import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import evojax_cma as ec  # noqa: E402
from evojax_cma.problems import HANSEN_SUITE  # noqa: E402

from common import write  # noqa: E402


def pycma_evals(fn, n, popsize, seeds):
    import cma

    batch = jax.jit(jax.vmap(fn))
    out = []
    for s in range(seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            es = cma.CMAEvolutionStrategy(
                n * [0.1],
                0.1,
                {"popsize": popsize, "ftarget": 1e-8, "verbose": -9, "seed": 1000 + s},
            )
            while not es.stop():
                X = es.ask()
                es.tell(X, list(np.asarray(batch(np.asarray(X)), dtype=float)))
        out.append((es.countevals, es.best.f < 1e-8))
    return out


def main(seeds: int = 21):
    rows = []
    print(f"{'n':>3} {'lam':>4} {'function':<11} {'ours':>8} {'pycma':>8} {'ratio':>6}  success")
    for n, lam in [(10, None), (10, 100), (3, None), (30, None)]:
        es = ec.cma_es(n, lam)
        for name, fn in HANSEN_SUITE.items():
            t0 = time.perf_counter()
            res = jax.vmap(
                lambda k, fn=fn, es=es, n=n: ec.minimize(
                    es, fn, k, 0.1 * jnp.ones(n), 0.1, options={"ftarget": 1e-8}
                )
            )(jax.random.split(jax.random.key(7), seeds))
            ours = np.asarray(res.state.evals)
            ok = np.asarray(res.state.best_f) < 1e-8
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            ref = pycma_evals(fn, n, es.popsize, seeds)
            t_ref = time.perf_counter() - t0
            ref_evals = np.array([e for e, _ in ref])
            ref_ok = np.array([o for _, o in ref])
            ratio = float(np.median(ours[ok]) / np.median(ref_evals[ref_ok]))
            rows.append(
                dict(
                    n=n,
                    popsize=es.popsize,
                    function=name,
                    median_evals=float(np.median(ours[ok])),
                    pycma_median_evals=float(np.median(ref_evals[ref_ok])),
                    ratio=ratio,
                    success=f"{ok.sum()}/{seeds}",
                    pycma_success=f"{ref_ok.sum()}/{seeds}",
                    wall_s=dict(ours=round(t_ours, 2), pycma=round(t_ref, 2)),
                )
            )
            print(
                f"{n:3d} {es.popsize:4d} {name:<11} {np.median(ours[ok]):8.0f} "
                f"{np.median(ref_evals[ref_ok]):8.0f} {ratio:6.3f}  {ok.sum()}/{seeds} vs "
                f"{ref_ok.sum()}/{seeds}",
                flush=True,
            )
    within = sum(abs(r["ratio"] - 1) <= 0.05 for r in rows)
    print(f"medians within +-5 % of pycma: {within}/{len(rows)}")
    write(
        "quality_cpu",
        dict(
            seeds=seeds,
            target="median evals within +-5% of pycma",
            within_5_percent=f"{within}/{len(rows)}",
            rows=rows,
        ),
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
