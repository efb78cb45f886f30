"""Complete pycma runs on our own (JAX) objective, for evaluation-count comparisons."""

from __future__ import annotations

import warnings

import jax
import numpy as np


def pycma_runs(fn, n, popsize, seeds, ftarget=1e-8, x0=0.1, sigma0=0.1, **options):
    """Return (evaluations, best f) of pycma runs with seeds 1, 2, ... on `fn`."""
    import cma

    batch = jax.jit(jax.vmap(fn))
    evals, best = [], []
    for s in range(seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            es = cma.CMAEvolutionStrategy(
                n * [x0],
                sigma0,
                {"popsize": popsize, "ftarget": ftarget, "verbose": -9, "seed": s + 1, **options},
            )
            while not es.stop():
                X = es.ask()
                es.tell(X, list(np.asarray(batch(np.asarray(X)), dtype=float)))
        evals.append(es.countevals)
        best.append(es.best.f)
    return np.array(evals), np.array(best)
