"""Time per generation on CPU: evojax_cma vs evosax's CMA_ES vs pycma, in one run.

One generation = ask, evaluate the sphere, tell. JAX sides run G generations in one
jit-compiled lax.scan (float32, JAX's default); compile time is reported separately.
pycma runs its Python loop (float64). "100 runs" vmaps the JAX sides; pycma's time per
run-generation is that of one run.

Compile time of the user-facing driver: ``evojax_cma.minimize`` for a 4-D CMA-ES (the
whole ``lax.while_loop`` with pycma's termination criteria) against evosax's CMA_ES in a
comparable jitted loop (``lax.while_loop`` over ask/tell up to maxiter), trace + compile,
median of 3 lowerings each after ``jax.clear_caches()``, in alternation.
Usage: python benchmarks/speed_cpu.py
"""

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import evojax_cma as ec

from common import interleaved_times, write


def sphere_batch(x):
    return jnp.sum(x**2, axis=-1)


def ours_runner(n, lam, runs, gens):
    es = ec.cma_es(n, lam)

    def one(key):
        state = es.init(key, jnp.ones(n), 0.5)

        def step(state, k):
            x, state = es.ask(k, state)
            return es.tell(state, x, sphere_batch(x)), None

        state, _ = jax.lax.scan(step, state, jax.random.split(key, gens))
        return state.mean

    return jax.jit(jax.vmap(one)), jax.random.split(jax.random.key(0), runs)


def evosax_runner(n, lam, runs, gens):
    from evosax.algorithms import CMA_ES

    es = CMA_ES(population_size=lam, solution=jnp.zeros(n))
    params = es.default_params

    def one(key):
        state = es.init(key, jnp.ones(n), params)

        def step(state, k):
            k1, k2 = jax.random.split(k)
            x, state = es.ask(k1, state, params)
            state, _ = es.tell(k2, x, sphere_batch(x), state, params)
            return state, None

        state, _ = jax.lax.scan(step, state, jax.random.split(key, gens))
        return state.mean

    return jax.jit(jax.vmap(one)), jax.random.split(jax.random.key(0), runs)


def compile_jax(make, n, lam, runs, gens):
    """(a zero-argument call running the compiled generations, compile seconds)."""
    fn, keys = make(n, lam, runs, gens)
    t0 = time.perf_counter()
    compiled = fn.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(keys))
    return (lambda: jax.block_until_ready(compiled(keys))), compile_s


def time_pycma(n, lam, gens):
    import cma

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = cma.CMAEvolutionStrategy(
            n * [1.0], 0.5, {"popsize": lam, "verbose": -9, "tolfun": 0, "tolx": 0, "seed": 1}
        )
        t0 = time.perf_counter()
        for _ in range(gens):
            X = es.ask()
            es.tell(X, list(np.sum(np.asarray(X) ** 2, axis=1)))
    return (time.perf_counter() - t0) / gens


def minimize_compile_seconds(n=4, maxiter=100, repeats=3):
    """Median seconds to trace and compile `minimize` vs evosax's jitted loop, alternated."""
    from evosax.algorithms import CMA_ES

    es = ec.cma_es(n)

    def ours(key):
        return ec.minimize(
            es, lambda x: jnp.sum(x**2), key, jnp.ones(n), 0.5, options={"maxiter": maxiter}
        ).best_f

    evo = CMA_ES(population_size=es.popsize, solution=jnp.zeros(n))
    params = evo.default_params

    def theirs(key):
        state = evo.init(key, jnp.ones(n), params)

        def cond(carry):
            return carry[0] < maxiter

        def body(carry):
            g, key, state = carry
            key, k1, k2 = jax.random.split(key, 3)
            x, state = evo.ask(k1, state, params)
            state, _ = evo.tell(k2, x, sphere_batch(x), state, params)
            return g + 1, key, state

        return jax.lax.while_loop(cond, body, (0, key, state))[2].best_fitness

    key = jax.random.key(0)
    times = {"ours": [], "evosax": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("evosax", theirs)):
            jax.clear_caches()  # else XLA's in-memory cache answers the second lowering
            t0 = time.perf_counter()
            jax.jit(fn).lower(key).compile()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def main():
    compile_minimize = minimize_compile_seconds()
    print(
        f"compile (trace + XLA) of minimize, 4-D CMA-ES: ours {compile_minimize['ours']:.2f} s, "
        f"evosax loop {compile_minimize['evosax']:.2f} s",
        flush=True,
    )
    rows = []
    print(
        f"{'n':>4} {'lam':>4} {'runs':>5} {'ours us':>9} {'evosax us':>10} {'pycma us':>9} "
        f"{'ours/evosax':>11} {'pycma/ours':>10}  compile ours/evosax s"
    )
    for n, lam, gens in [(10, 10, 1000), (100, 17, 300)]:
        t_pycma = time_pycma(n, lam, min(gens, 300))
        for runs in (1, 100):
            call_ours, c_ours = compile_jax(ours_runner, n, lam, runs, gens)
            call_evo, c_evo = compile_jax(evosax_runner, n, lam, runs, gens)
            times = interleaved_times({"ours": call_ours, "evosax": call_evo})
            t_ours, t_evo = (times[k] / (runs * gens) for k in ("ours", "evosax"))
            row = dict(
                n=n,
                popsize=lam,
                runs=runs,
                generations=gens,
                us_per_run_generation=dict(
                    ours=t_ours * 1e6, evosax=t_evo * 1e6, pycma=t_pycma * 1e6
                ),
                compile_s=dict(ours=c_ours, evosax=c_evo),
                ours_over_evosax=t_ours / t_evo,
                pycma_over_ours=t_pycma / t_ours,
            )
            rows.append(row)
            print(
                f"{n:4d} {lam:4d} {runs:5d} {t_ours * 1e6:9.2f} {t_evo * 1e6:10.2f} "
                f"{t_pycma * 1e6:9.1f} {t_ours / t_evo:11.3f} {t_pycma / t_ours:10.1f}  "
                f"{c_ours:.2f}/{c_evo:.2f}",
                flush=True,
            )
    write(
        "speed_cpu",
        dict(
            targets="ours <= 0.5x evosax per run-generation; >= 30x pycma at n=10",
            rows=rows,
            compile_minimize_4d_s=compile_minimize,
        ),
    )


if __name__ == "__main__":
    main()
