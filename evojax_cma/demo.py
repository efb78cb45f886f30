"""Demo: ``python -m evojax_cma.demo`` runs CMA-ES on CPU and prints progress and results."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
    """Minimise 10-D Rosenbrock with the host driver, then 100 runs in one vmapped jit."""
    jax.config.update("jax_enable_x64", True)
    import evojax_cma as ec
    from evojax_cma.problems import rosenbrock

    print("1) fmin on a NumPy objective: 10-D Rosenbrock, x0 = 0.1, sigma0 = 0.1")

    def rosen_np(x: np.ndarray) -> float:
        return float(np.sum(100.0 * (x[:-1] ** 2 - x[1:]) ** 2 + (x[:-1] - 1.0) ** 2))

    xbest, res = ec.fmin(rosen_np, 0.1 * np.ones(10), 0.1, {"ftarget": 1e-10, "verb_disp": 100})
    print(f"   xbest = {np.round(xbest, 6)}")

    print("\n2) 100 independent runs, one jit-compiled, vmapped while_loop")
    es = ec.cma_es(10)
    keys = jax.random.split(jax.random.key(0), 100)
    run = jax.jit(
        jax.vmap(
            lambda k: ec.minimize(
                es, rosenbrock, k, 0.1 * jnp.ones(10), 0.1, options={"ftarget": 1e-8}
            )
        )
    )
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(keys))
    t1 = time.perf_counter()
    out = jax.block_until_ready(run(keys))
    t2 = time.perf_counter()
    best = np.asarray(out.state.best_f)
    evals = np.asarray(out.state.evals)
    print(
        f"   success (f < 1e-8): {np.mean(best < 1e-8):.0%}, median evaluations "
        f"{np.median(evals):.0f}, compile+run {t1 - t0:.1f} s, run {t2 - t1:.2f} s"
    )


if __name__ == "__main__":
    main()
