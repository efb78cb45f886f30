"""The accelerator figures the issues ask for, in one script (any JAX device; float32).

1. CMA-ES, 10,000 vmapped runs of the 10-D sphere for 1000 generations (``speed_cpu.py``'s
   runners: ask/tell in one ``lax.scan``): time per run·generation and in total; evosax's
   CMA_ES timed in alternation when it is installed.
2. CMA-ES, one run at n = 1000 (default λ): time per generation and how many
   eigendecompositions the lazy gap allowed.
3. OpenAI-ES with 10⁶ parameters and popsize 10⁴, chunked (noise regenerated from keys,
   never the whole population): time per generation against the memory-bandwidth bound of
   writing and reading the noise once, ``2 * 4 bytes * popsize * n / bandwidth``
   (``--bandwidth`` in GB/s; 3350 is an H100 SXM's HBM3 peak, 4800 an H200's).

Writes ``results/gpu_<platform>.json`` with the device named. ``--quick`` shrinks every size
so that the script can be checked on a CPU.

    python benchmarks/gpu.py [--quick] [--bandwidth 3350]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from speed_cpu import compile_jax, evosax_runner, ours_runner, sphere_batch

import evojax_cma as ec

from common import interleaved_times, median_time, write


def timed(fn, *args):
    """(seconds per call of a compiled `fn`, compile seconds, last output)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(*args))
    return median_time(lambda: jax.block_until_ready(compiled(*args))), compile_s, out


def cma_many_runs(runs, n, gens):
    """speed_cpu's runners at GPU scale; ours and evosax timed in alternation."""
    lam = 4 + int(3 * np.log(n))
    call_ours, compile_ours = compile_jax(ours_runner, n, lam, runs, gens)
    row = dict(runs=runs, n=n, popsize=lam, generations=gens, compile_s=compile_ours)
    calls = {"ours": call_ours}
    try:
        calls["evosax"], row["compile_s_evosax"] = compile_jax(evosax_runner, n, lam, runs, gens)
    except ImportError:
        row["evosax"] = "not installed"
    times = interleaved_times(calls, rounds=3)
    for name, seconds in times.items():
        row[f"seconds_{name}"] = seconds
        row[f"us_per_run_generation_{name}"] = seconds / (runs * gens) * 1e6
    if "evosax" in times:
        row["ours_over_evosax"] = times["ours"] / times["evosax"]
    row["median_f_mean_ours"] = float(jnp.median(sphere_batch(call_ours())))
    return row


def cma_one_large(n, gens):
    es = ec.cma_es(n)

    def run(key):
        state = es.init(key, jnp.ones(n), 1.0)

        def step(state, k):
            x, state = es.ask(k, state)
            return es.tell(state, x, sphere_batch(x)), None

        return jax.lax.scan(step, state, jax.random.split(key, gens))[0]

    seconds, compile_s, state = timed(run, jax.random.key(0))
    gap = float(es.default_params().eigen_gap)
    return dict(
        n=n,
        popsize=es.popsize,
        generations=gens,
        ms_per_generation=seconds / gens * 1e3,
        compile_s=compile_s,
        eigen_gap_generations=gap,
        f_after=float(jnp.sum(state.mean**2)),
    )


def open_es_huge(n, popsize, chunk, bandwidth_gbs):
    es = ec.open_es(n, popsize, chunk_size=chunk)
    state = es.init(None, jnp.ones(n, jnp.float32), 0.1)

    def generation(key, state):
        fitness = ec.chunked_fitness(es, sphere_batch, key, state, batched=True)
        return es.tell_keyed(key, state, fitness)

    seconds, compile_s, new_state = timed(generation, jax.random.key(1), state)
    noise_bytes = 4.0 * popsize * n
    bound = 2 * noise_bytes / (bandwidth_gbs * 1e9)
    return dict(
        n=n,
        popsize=popsize,
        chunk_size=chunk,
        antithetic=True,
        seconds_per_generation=seconds,
        compile_s=compile_s,
        noise_gb=noise_bytes / 1e9,
        bandwidth_gbs=bandwidth_gbs,
        bound_seconds=bound,
        over_bound=seconds / bound,
        finite=bool(jnp.all(jnp.isfinite(new_state.mean))),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, to check on CPU")
    parser.add_argument("--bandwidth", type=float, default=3350.0, help="GB/s of the device")
    args = parser.parse_args()
    if args.quick:
        sizes = dict(runs=100, gens=50, large_n=100, large_gens=20, es=(10**4, 100, 50))
    else:
        sizes = dict(runs=10_000, gens=1000, large_n=1000, large_gens=500, es=(10**6, 10**4, 500))
    rows = dict(device=str(jax.devices()[0]), quick=args.quick)
    rows["cma_many_runs"] = cma_many_runs(sizes["runs"], 10, sizes["gens"])
    print(rows["cma_many_runs"], flush=True)
    rows["cma_one_large"] = cma_one_large(sizes["large_n"], sizes["large_gens"])
    print(rows["cma_one_large"], flush=True)
    rows["open_es_huge"] = open_es_huge(*sizes["es"], args.bandwidth)
    print(rows["open_es_huge"], flush=True)
    suffix = "_quick" if args.quick else ""
    write(f"gpu_{jax.devices()[0].platform}{suffix}", rows)


if __name__ == "__main__":
    main()
