"""Peak memory of one OpenAI-ES generation, chunked (noise regenerated from keys) or not.

Each configuration runs in a fresh subprocess: build open_es(n, popsize, chunk_size), then one
generation of ``chunked_fitness`` + ``tell_keyed`` (chunked) or ``ask`` + ``tell`` (the whole
population at once), float32, sphere objective. Reported: the process's peak resident memory
(ru_maxrss), the same for a process that only imports JAX and builds the state (baseline),
and the wall time. The population alone takes ``4 * popsize * n`` bytes.
Usage: python benchmarks/chunked_memory.py [--full]   (--full adds n=1e6, popsize=1e5)
"""

import json
import resource
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
import evojax_cma as ec
n, lam, chunk, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
es = ec.open_es(n, lam, chunk_size=chunk if mode == "chunked" else None)
state = es.init(None, jnp.ones(n, jnp.float32), 0.1)
key = jax.random.key(0)
sphere = lambda X: jnp.sum(X**2, axis=1)
if mode == "chunked":
    step = jax.jit(lambda k, s: es.tell_keyed(k, s, ec.chunked_fitness(es, sphere, k, s,
                                                                           batched=True)))
elif mode == "full":
    def step(k, s):
        x, s = es.ask(k, s)
        return es.tell(s, x, sphere(x))
    step = jax.jit(step)
else:
    step = None
t = 0.0
if step is not None:
    compiled = step.lower(key, state).compile()
    t0 = time.perf_counter()
    state = jax.block_until_ready(compiled(key, state))
    t = time.perf_counter() - t0
print(json.dumps(dict(peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      seconds=t, finite=bool(jnp.all(jnp.isfinite(state.mean))))))
"""


def run(n, lam, chunk, mode):
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(lam), str(chunk), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(full=False):
    from common import write

    configs = [
        (10**6, 100, 10, "full"),
        (10**6, 100, 10, "chunked"),
        (10**6, 1000, 10, "chunked"),
        (10**5, 1000, 100, "full"),
        (10**5, 1000, 100, "chunked"),
        (10**5, 10**4, 100, "chunked"),
    ]
    if full:
        configs.append((10**6, 10**5, 100, "chunked"))
    rows = []
    print(
        f"{'n':>8} {'popsize':>8} {'chunk':>6} {'mode':<8} {'population MiB':>14} "
        f"{'peak MiB':>9} {'baseline':>9} {'seconds':>8}"
    )
    for n, lam, chunk, mode in configs:
        base = run(n, lam, chunk, "baseline")
        r = run(n, lam, chunk, mode)
        pop_mib = 4 * n * lam / 2**20
        rows.append(
            dict(
                num_dims=n,
                popsize=lam,
                chunk_size=chunk,
                mode=mode,
                population_mib=pop_mib,
                peak_mib=r["peak_mib"],
                baseline_mib=base["peak_mib"],
                seconds=r["seconds"],
                finite=r["finite"],
            )
        )
        print(
            f"{n:8d} {lam:8d} {chunk:6d} {mode:<8} {pop_mib:14.0f} {r['peak_mib']:9.0f} "
            f"{base['peak_mib']:9.0f} {r['seconds']:8.2f}",
            flush=True,
        )
    write(
        "chunked_memory_cpu",
        dict(
            rows=rows,
            ru_maxrss_of_parent_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            date=time.strftime("%Y-%m-%d"),
        ),
    )


if __name__ == "__main__":
    main(full="--full" in sys.argv)
