"""Which layout should `evojax_cma.sweep` use on CPU? vmap, lax.map, both, or a Python loop.

Three sweeps, each run with every layout of `evojax_cma.sweep`:

(a) CMA-ES on the 10-D ellipsoid (condition 1e6), a c1 x c_mu grid x seeds, each run
    stopping on its own (ftarget 1e-8 or maxfevals): runs of unequal length, where a
    vmapped while_loop iterates until the slowest run stops, and where pycma's eigen gap
    (below one generation at n = 10) makes the batch decompose C almost every generation;
(b) many short runs (2-D sphere, 256 runs): the per-call cost of a Python loop;
(c) OpenAI-ES on a small digits MLP (`evojax_cma.tasks.DigitsMLP`, keyed minibatch loss),
    a learning-rate x sigma0 grid x seeds, a fixed number of generations: equal-length runs
    whose generation is a batch of small matrix products.

Layouts: ``vmap`` (all runs in one batched while_loop), ``map`` (``lax.map`` over single
runs), ``map_w`` (``lax.map`` over vmapped groups of w runs) and ``loop`` (a Python loop over
one jitted single run). For each: the first call (compilation included, caches cleared
before it) and the median of later calls, timed in alternation (``interleaved_times``), plus
the work a vmapped batch wastes (generations iterated by the batch vs by each run).

    python benchmarks/sweep_layout.py [--quick]

Writes ``results/sweep_layout_cpu.json`` (``sweep_layout_quick_cpu.json`` with ``--quick``,
tiny settings: a smoke test of the script, its times mean nothing).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import evojax_cma as ec
from evojax_cma.problems import ellipsoid, sphere
from evojax_cma.sweep import sweep
from evojax_cma.tasks import DigitsMLP, check_task, task_objective

from common import interleaved_times, write

LAYOUTS = {
    "vmap": dict(layout="vmap"),
    "map": dict(layout="map"),
    "map_4": dict(layout="map", width=4),
    "loop": dict(layout="loop"),
}


def cases(quick: bool) -> dict:
    """name -> (description, keyword arguments of `sweep`)."""
    n = 10
    es = ec.cma_es(n)
    cma = dict(
        strategy=es,
        fn=ellipsoid,
        x0=jnp.ones(n),
        sigma0=0.5,
        grid={"c1": [0.01, 0.02, 0.04], "c_mu": [0.02, 0.05, 0.1]},
        seeds=2 if quick else 4,
        options={"ftarget": 1e-8, "maxfevals": 30_000},
    )
    task = DigitsMLP(hidden=(8,) if quick else (16,), batch_size=32 if quick else 64)
    spec = check_task(task)
    x0 = spec.ravel(task.init_params(jax.random.key(0)))
    digits = dict(
        strategy=ec.open_es(spec.size, 16 if quick else 64, learning_rate=0.03),
        fn=task_objective(task, spec),
        x0=x0,
        sigma0=None,
        sigma0s=[0.05, 0.1],
        grid={"learning_rate": [0.01, 0.03, 0.1]},
        seeds=2 if quick else 3,
        keyed=True,
        generations=10 if quick else 300,
    )
    tiny = dict(
        strategy=ec.cma_es(2),
        fn=sphere,
        x0=jnp.ones(2),
        sigma0=0.5,
        grid={"c_mu": [0.05, 0.1, 0.2, 0.3]},
        seeds=16 if quick else 64,
        options={"ftarget": 1e-8},
    )
    return {
        f"cma_es_ellipsoid_n{n}": ("CMA-ES, 10-D ellipsoid, runs stop on their own", cma),
        "cma_es_sphere_n2_many_runs": ("CMA-ES, 2-D sphere: many short runs", tiny),
        f"open_es_digits_mlp_d{spec.size}": ("OpenAI-ES, digits MLP, fixed generations", digits),
    }


def measure(kwargs: dict, rounds: int) -> dict:
    """First-call and steady times of every layout, and the batch's wasted iterations."""
    first, tables = {}, {}
    for name, layout in LAYOUTS.items():
        jax.clear_caches()
        t0 = time.perf_counter()
        tables[name] = sweep(**kwargs, **layout).table
        first[name] = time.perf_counter() - t0
        print(f"  {name:6s} first call {first[name]:7.2f} s", flush=True)
    calls = {name: (lambda lay=lay: sweep(**kwargs, **lay)) for name, lay in LAYOUTS.items()}
    for call in calls.values():  # compile again: clear_caches above dropped the others
        call()
    steady = interleaved_times(calls, rounds=rounds)
    gens = tables["loop"]["generations"]
    for name in LAYOUTS:
        print(f"  {name:6s} steady     {steady[name]:7.2f} s", flush=True)
    return dict(
        runs=int(gens.size),
        generations=dict(total=int(gens.sum()), max=int(gens.max()), min=int(gens.min())),
        vmap_iterations_over_work=float(gens.max() * gens.size / gens.sum()),
        first_call_s=first,
        steady_s=steady,
        steady_relative_to_loop={k: v / steady["loop"] for k, v in steady.items()},
        best_f_median={k: float(np.median(t["best_f"])) for k, t in tables.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = parser.parse_args()
    out = {}
    for name, (description, kwargs) in cases(args.quick).items():
        print(name, flush=True)
        out[name] = dict(description=description, **measure(kwargs, 2 if args.quick else 5))
    suffix = "_quick" if args.quick else ""
    write(f"sweep_layout{suffix}_cpu", dict(quick=args.quick, layouts=LAYOUTS, cases=out))


if __name__ == "__main__":
    main()
