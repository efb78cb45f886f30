"""Time per run-generation on CPU: evojax_cma vs evosax (and pycma), in one run.

The regime is that of runs still at work: a rotated ellipsoid (condition 1e6) from
x0 = 3, sigma0 = 1, which no run solves within the timed generations (the JSON records
each configuration's median best f and smallest sigma to show it). Timing converged runs
instead (a sphere after float32 underflow) flatters this library, whose generation gets
cheaper there; the figures quoted before 2026-11-24 were taken that way.

One generation = ask, evaluate, tell. JAX sides run G generations in one jit-compiled
``lax.scan`` (float32, JAX's default), vmapped over runs, timed in alternation
(`common.interleaved_times`); compile time is reported separately. pycma runs its Python
loop (float64) on the same function; its time per run-generation is that of one run.

1. CMA-ES at n = 10 (λ = 10) and n = 100 (λ = 17) against evosax's ``CMA_ES``, and
   OpenAI-ES (n = 100, λ = 64, Adam) against evosax's ``Open_ES``, for 1 ... 10^4 vmapped
   runs (10^3 at n = 100): run-generations per second against the number of runs, and
   the exponent of time against runs fitted past saturation (>= 100 runs; 1 = linear).
2. Compile time of the user-facing driver: ``evojax_cma.minimize`` for a 4-D CMA-ES (the
   whole ``lax.while_loop`` with pycma's termination criteria) against evosax's CMA_ES in
   a comparable jitted loop, trace + compile, median of 3 lowerings each after
   ``jax.clear_caches()``, in alternation.

Where the time of a generation goes: ``benchmarks/profile_generation.py``.
Usage: python benchmarks/speed_cpu.py [--quick]
"""

import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import evojax_cma as ec

from common import interleaved_times, rotated_ellipsoid, write


def sphere_batch(x):
    return jnp.sum(x**2, axis=-1)


X0, SIGMA0, LR = 3.0, 1.0, 0.05


def ours_runner(kind, n, lam, runs, gens, f):
    if kind == "cma_es":
        es = ec.cma_es(n, lam)
    else:
        es = ec.open_es(n, lam, learning_rate=LR)

    def one(key):
        state = es.init(key, jnp.full(n, X0), SIGMA0)

        def step(state, k):
            x, state = es.ask(k, state)
            return es.tell(state, x, f(x)), None

        state, _ = jax.lax.scan(step, state, jax.random.split(key, gens))
        return state.best_f, state.sigma

    return jax.jit(jax.vmap(one)), jax.random.split(jax.random.key(0), runs)


def evosax_runner(kind, n, lam, runs, gens, f):
    one = evosax_one(kind, n, lam, gens, f)
    return jax.jit(jax.vmap(one)), jax.random.split(jax.random.key(0), runs)


def evosax_one(kind, n, lam, gens, f):
    """One evosax run of `gens` generations from x0 = X0 (a function of its key)."""
    import optax
    from evosax.algorithms import CMA_ES, Open_ES

    if kind == "cma_es":
        es = CMA_ES(population_size=lam, solution=jnp.zeros(n))
        params = es.default_params
    else:
        schedule = optax.constant_schedule(SIGMA0)
        es = Open_ES(lam, jnp.zeros(n), optimizer=optax.adam(LR), std_schedule=schedule)
        params = es.default_params

    def one(key):
        state = es.init(key, jnp.full(n, X0), params)

        def step(state, k):
            k1, k2 = jax.random.split(k)
            x, state = es.ask(k1, state, params)
            state, _ = es.tell(k2, x, f(x), state, params)
            return state, None

        state, _ = jax.lax.scan(step, state, jax.random.split(key, gens))
        return state.best_fitness

    return one


def compile_jax(make, *args):
    """(a zero-argument call running the compiled generations, compile s, first output)."""
    fn, keys = make(*args)
    t0 = time.perf_counter()
    compiled = fn.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(keys))
    return (lambda: jax.block_until_ready(compiled(keys))), compile_s, out


def time_pycma(n, lam, gens, f):
    import cma

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = cma.CMAEvolutionStrategy(
            n * [X0], SIGMA0, {"popsize": lam, "verbose": -9, "tolfun": 0, "tolx": 0, "seed": 1}
        )
        t0 = time.perf_counter()
        for _ in range(gens):
            X = es.ask()
            es.tell(X, list(f(np.asarray(X))))
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


def generations_for(n, runs, quick):
    """Generations per timed call: about 0.3 s of work per call (fewer with --quick)."""
    work = (3_000 if quick else 15_000) * (10 / n) ** 2
    return int(max(3, min(300, work // runs)))


def throughput(kind, n, lam, runs_list, quick):
    f = rotated_ellipsoid(n)
    rows = []
    for runs in runs_list:
        gens = generations_for(n, runs, quick)
        call_ours, c_ours, (best_f, sigma) = compile_jax(ours_runner, kind, n, lam, runs, gens, f)
        call_evo, c_evo, _ = compile_jax(evosax_runner, kind, n, lam, runs, gens, f)
        times = interleaved_times({"ours": call_ours, "evosax": call_evo}, 3 if quick else 7)
        t_ours, t_evo = (times[k] / (runs * gens) for k in ("ours", "evosax"))
        row = dict(
            strategy=kind,
            n=n,
            popsize=lam,
            runs=runs,
            generations=gens,
            us_per_run_generation=dict(ours=t_ours * 1e6, evosax=t_evo * 1e6),
            run_generations_per_s=dict(ours=1 / t_ours, evosax=1 / t_evo),
            ours_over_evosax=t_ours / t_evo,
            compile_s=dict(ours=c_ours, evosax=c_evo),
            regime=dict(
                median_best_f=float(np.median(np.asarray(best_f))),
                min_sigma=float(np.min(np.asarray(sigma))),
            ),
        )
        rows.append(row)
        print(
            f"{kind:>7} {n:4d} {lam:4d} {runs:6d} {gens:5d} {t_ours * 1e6:9.2f} "
            f"{t_evo * 1e6:10.2f} {t_ours / t_evo:11.3f}  {c_ours:.2f}/{c_evo:.2f}  "
            f"median f {row['regime']['median_best_f']:.3g}",
            flush=True,
        )
    return rows


def fitted_exponent(rows, side):
    """Slope of log(batch time per generation) against log(runs), for runs >= 100."""
    pts = [(r["runs"], r["us_per_run_generation"][side] * r["runs"]) for r in rows]
    pts = [(r, t) for r, t in pts if r >= 100]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def main():
    quick = "--quick" in sys.argv
    compile_minimize = minimize_compile_seconds(repeats=1 if quick else 3)
    print(
        f"compile (trace + XLA) of minimize, 4-D CMA-ES: ours {compile_minimize['ours']:.2f} s, "
        f"evosax loop {compile_minimize['evosax']:.2f} s",
        flush=True,
    )
    pycma = {}
    for n, lam in ((10, 10), (100, 17)):
        pycma[n] = time_pycma(n, lam, 30 if quick else 200, rotated_ellipsoid(n, xp=np)) * 1e6
        print(f"pycma n={n}: {pycma[n]:.1f} us per generation (float64, Python loop)")
    print(
        f"{'kind':>7} {'n':>4} {'lam':>4} {'runs':>6} {'gens':>5} {'ours us':>9} "
        f"{'evosax us':>10} {'ours/evosax':>11}  compile ours/evosax s"
    )
    many = [1, 10, 100] if quick else [1, 10, 100, 1000, 10000]
    configs = [
        ("cma_es", 10, 10, many),
        ("cma_es", 100, 17, many[:4]),
        ("open_es", 100, 64, many[:4]),
    ]
    rows, exponents = [], {}
    for kind, n, lam, runs_list in configs:
        part = throughput(kind, n, lam, runs_list, quick)
        rows += part
        exponents[f"{kind} n={n}"] = {s: fitted_exponent(part, s) for s in ("ours", "evosax")}
    print("exponent of batch time against runs (>= 100 runs):", exponents)
    write(
        "speed_cpu_quick" if quick else "speed_cpu",
        dict(
            regime="rotated ellipsoid, condition 1e6, x0 = 3, sigma0 = 1: runs still at work",
            targets="ours <= 0.5x evosax per run-generation; cost linear in runs past saturation",
            rows=rows,
            fitted_exponent=exponents,
            pycma_us_per_generation=pycma,
            compile_minimize_4d_s=compile_minimize,
        ),
    )


if __name__ == "__main__":
    main()
