"""Time per generation with the population split over 1, 2, 4, 8 devices.

Each device count runs in its own process. On CPU the devices are host devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=D``: they share this machine's cores
(2 here), so the figures measure the overhead of sharding (partitioned sampling, the
fitness gather, the reductions), not a speed-up. On GPUs/TPUs the first D real devices are
used (``--backend-devices``), with the same code. Per device count, interleaved in the same
process: ``minimize(..., sharding=population_sharding(D))`` against the same call without a
sharding, for CMA-ES and chunked OpenAI-ES, on an objective made costly on purpose (a
simulation-like inner loop per point), so that evaluation dominates as it does in practice.

    python benchmarks/device_scaling.py [--quick]

Writes ``results/device_scaling[_quick]_<platform>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from functools import partial

CHILD = "--child"


def child(devices: int, quick: bool) -> dict:
    import jax
    import jax.numpy as jnp

    import evojax_cma as ec

    from common import interleaved_times

    n, lam, inner, gens = (16, 64, 20, 5) if quick else (100, 1024, 200, 20)

    def costly(x):  # an inner loop standing in for a simulation
        def body(_, y):
            return jnp.sin(y) + 0.5 * x

        return jnp.sum(jax.lax.fori_loop(0, inner, body, x) ** 2)

    def timed_run(es, opts):
        res = ec.minimize(es, costly, jax.random.key(0), jnp.ones(n), 0.5, **opts)
        return jax.block_until_ready(res.state.mean)

    sh = ec.population_sharding(devices)
    cases = {
        "cma_es": (ec.cma_es(n, lam), {}),
        "open_es_chunked": (ec.open_es(n, lam, chunk_size=lam // 4), {"chunked": True}),
    }
    rows = {}
    for name, (es, kw) in cases.items():
        calls = {}
        for label, sharding in (("sharded", sh), ("one_device", None)):
            call = partial(timed_run, es, dict(kw, generations=gens, sharding=sharding))
            call()  # compile
            calls[label] = call
        times = interleaved_times(calls, rounds=3 if quick else 7)
        rows[name] = {f"ms_per_generation_{k}": 1e3 * v / gens for k, v in times.items()} | {
            "sharded_over_one_device": times["sharded"] / times["one_device"]
        }
    return dict(devices=devices, n=n, popsize=lam, inner_steps=inner, generations=gens, **rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument(
        "--backend-devices",
        action="store_true",
        help="use the backend's real devices (GPU/TPU) instead of forced host ones",
    )
    parser.add_argument(CHILD, type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT" + json.dumps(child(args.child, args.quick)), flush=True)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    results = []
    for d in map(int, args.counts.split(",")):
        env = dict(os.environ)
        if not args.backend_devices:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={d}"
            env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, os.path.abspath(__file__), CHILD, str(d)]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=here, check=True)
        row = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))[6:])
        print(row)
        results.append(row)

    import jax

    from common import write

    platform = "cpu" if not args.backend_devices else jax.devices()[0].platform
    write(
        f"device_scaling{'_quick' if args.quick else ''}_{platform}",
        {
            "note": (
                "forced host devices share this machine's cores: the figures measure the "
                "overhead of sharding, not a speed-up"
                if platform == "cpu"
                else "real devices"
            ),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
