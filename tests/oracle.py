"""Drive pycma, cmaes and evojax_cma with the same candidate points and compare states."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import evojax_cma as ec


def relerr(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def our_points(state, rng, lam):
    n = state.mean.shape[0]
    z = rng.standard_normal((lam, n))
    return (
        np.asarray(state.mean)
        + float(state.sigma) * z @ (np.asarray(state.B) * np.asarray(state.D)).T
    )


def pycma_trace(n, lam, fn, generations, seed=0, x0=0.1, sigma0=0.3, then=None):
    """Yield (pycma es, our state, hsig computed from pycma's path) per generation.

    ``then=(g0, fn2)`` switches the objective to ``fn2`` from generation ``g0`` on.
    """
    import cma

    es = ec.cma_es(n, lam)
    state = es.init(jax.random.key(0), x0 * np.ones(n), sigma0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cma.CMAEvolutionStrategy(
            x0 * np.ones(n), sigma0, {"popsize": lam, "verbose": -9, "seed": 1}
        )
    ask, tell = jax.jit(es.ask), jax.jit(es.tell)
    rng = np.random.default_rng(seed)
    for g in range(generations):
        if then is not None and g == then[0]:
            fn = then[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref.ask()  # refreshes pycma's B, D exactly when our ask does (same lazy gap)
        _, state = ask(jax.random.key(g), state)
        X = our_points(state, rng, lam)
        F = np.array([float(fn(jnp.asarray(x))) for x in X])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref.tell(list(X), list(F), check_points=False)
        state = tell(state, jnp.asarray(X), jnp.asarray(F))
        ps, cs = ref.adapt_sigma.ps, ref.adapt_sigma.cs
        hsig = np.sum(ps**2) / (1 - (1 - cs) ** (2 * ref.countiter)) / n - 1 < 1 + 4.0 / (n + 1)
        yield ref, state, bool(hsig)


def cmaes_trace(n, lam, fn, generations, seed=0, x0=0.1, sigma0=0.3):
    """Yield (cmaes optimizer, our tutorial-preset state) per generation."""
    import cmaes

    es = ec.cma_es(n, lam, preset="tutorial")
    state = es.init(jax.random.key(0), x0 * np.ones(n), sigma0)
    ref = cmaes.CMA(mean=x0 * np.ones(n), sigma=sigma0, population_size=lam, seed=1)
    ask, tell = jax.jit(es.ask), jax.jit(es.tell)
    rng = np.random.default_rng(seed)
    for g in range(generations):
        _, state = ask(jax.random.key(g), state)
        X = our_points(state, rng, lam)
        F = np.array([float(fn(jnp.asarray(x))) for x in X])
        # cmaes' h_sigma correction uses exponent 2(g+1) after incrementing g, one more than
        # the tutorial's 2(g+1) before incrementing; keeping its counter one behind aligns it.
        ref._g = g - 1
        ref.tell([(x, f) for x, f in zip(X, F, strict=True)])
        state = tell(state, jnp.asarray(X), jnp.asarray(F))
        yield ref, state


def sepcma_trace(n, lam, fn, generations, seed=0, x0=0.1, sigma0=0.3, then=None):
    """Yield (cmaes SepCMA, our sep-CMA-ES state with the "cmaes" preset, h_sigma) per generation.

    h_sigma is computed from cmaes' own path with its own bias-correction exponent.
    """
    import cmaes

    es = ec.sep_cma_es(n, lam, preset="cmaes")
    state = es.init(jax.random.key(0), x0 * np.ones(n), sigma0)
    ref = cmaes.SepCMA(mean=x0 * np.ones(n), sigma=sigma0, population_size=lam, seed=1)
    tell = jax.jit(es.tell)
    rng = np.random.default_rng(seed)
    for g in range(generations):
        if then is not None and g == then[0]:
            fn = then[1]
        z = rng.standard_normal((lam, n))
        X = np.asarray(state.mean) + float(state.sigma) * z * np.sqrt(np.asarray(state.C))
        F = np.array([float(fn(jnp.asarray(x))) for x in X])
        ref._g = g - 1  # the same counter alignment as for cmaes.CMA (see cmaes_trace)
        ref.tell([(x, f) for x, f in zip(X, F, strict=True)])
        state = tell(state, jnp.asarray(X), jnp.asarray(F))
        bias = 1 - (1 - ref._c_sigma) ** (2 * (ref._g + 1))
        hsig = np.linalg.norm(ref._p_sigma) / np.sqrt(bias) < (1.4 + 2 / (n + 1)) * ref._chi_n
        yield ref, state, bool(hsig)
