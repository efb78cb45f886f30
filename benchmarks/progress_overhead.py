"""Per-generation cost of a jitted run with a progress bar on vs off (issue 15's target).

``minimize(..., progress=True, segment=k)`` runs one compiled loop that reports to a tqdm
bar every k generations (one host callback of four numbers per segment);
``progress=False`` runs the loop without reports, also in one call.
Timed on CMA-ES on the rotated ellipsoid (every generation does full work), interleaved
(one round times every setting once, so all see the same load), for k = 10, 100, 1000.
The target is a ratio (progress on / off, per generation) <= 1.10 at k = 100. For
context, pycma's own per-generation cost with its display (``es.disp()`` every k
generations) vs without is measured in the same rounds, and so is the host driver
`evojax_cma.fmin` with its bar (moved every generation) vs without. The bar writes to a discarded
stream, so the terminal's speed is not measured.

Usage: python benchmarks/progress_overhead.py [--n 10] [--generations 3000] [--rounds 7]
(``--tiny`` checks that it works: n = 4, 200 generations, 2 rounds, written to
``progress_overhead_tiny_cpu.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings

import jax
import numpy as np

import evojax_cma as ec

from common import interleaved_times, rotated_ellipsoid, write

SEGMENTS = (10, 100, 1000)


def ours(n: int, generations: int, segment: int | None):
    es, f = ec.cma_es(n), rotated_ellipsoid(n)
    x0 = 3 * np.ones(n, np.float32)

    def call():
        with contextlib.redirect_stderr(io.StringIO()):
            res = ec.minimize(
                es,
                f,
                jax.random.key(0),
                x0,
                1.0,
                generations=generations,
                batched=True,
                progress=segment is not None,
                segment=segment or 100,
            )
            jax.block_until_ready(res.state.mean)
        assert int(res.state.generation) == generations

    return call


def pycma(n: int, generations: int, every: int | None):
    import cma

    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((n, n)))
    scales = 1e6 ** (np.arange(n) / (n - 1))

    def call():
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            es = cma.CMAEvolutionStrategy(3 * np.ones(n), 1.0, {"verbose": -9, "seed": 1})
            for g in range(1, generations + 1):
                X = np.asarray(es.ask())
                es.tell(X, list(np.sum(scales * (X @ q.T) ** 2, axis=1)))
                if every is not None and g % every == 0:
                    es.disp()

    return call


def fmin(n: int, generations: int, progress: bool):
    """The host driver `evojax_cma.fmin` (its bar moves every generation), NumPy objective."""
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((n, n)))
    scales = 1e6 ** (np.arange(n) / (n - 1))

    def ellipsoid(X):
        return np.sum(scales * (np.asarray(X) @ q.T) ** 2, axis=1)

    def call():
        with contextlib.redirect_stderr(io.StringIO()):
            _, res = ec.fmin(
                ellipsoid,
                3 * np.ones(n),
                1.0,
                {"maxiter": generations, "verbose": 0, "seed": 1},
                batched=True,
                progress=progress,
            )
        assert res.iterations == generations

    return call


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--generations", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pycma-generations", type=int, default=300)
    parser.add_argument("--tiny", action="store_true")
    a = parser.parse_args()
    if a.tiny:
        a.n, a.generations, a.rounds, a.pycma_generations = 4, 200, 2, 50
    calls = {"off": ours(a.n, a.generations, None)}
    calls.update({f"on_k{k}": ours(a.n, a.generations, k) for k in SEGMENTS})
    calls["pycma_off"] = pycma(a.n, a.pycma_generations, None)
    calls["pycma_disp_k100"] = pycma(a.n, a.pycma_generations, 100)
    calls["fmin_off"] = fmin(a.n, a.pycma_generations, False)
    calls["fmin_bar"] = fmin(a.n, a.pycma_generations, True)
    t0 = time.perf_counter()
    for call in calls.values():  # compile (one program for every setting) and warm up
        call()
    warmup = time.perf_counter() - t0
    seconds = interleaved_times(calls, rounds=a.rounds)
    per_gen = {
        k: v / (a.pycma_generations if k.startswith(("pycma", "fmin")) else a.generations)
        for k, v in seconds.items()
    }
    ratios = {f"k{k}": per_gen[f"on_k{k}"] / per_gen["off"] for k in SEGMENTS}
    ratios["pycma_disp_k100"] = per_gen["pycma_disp_k100"] / per_gen["pycma_off"]
    ratios["fmin_bar"] = per_gen["fmin_bar"] / per_gen["fmin_off"]
    for name, value in per_gen.items():
        print(f"{name:>16}: {1e6 * value:9.1f} us/generation")
    for name, value in ratios.items():
        print(f"ratio {name:>16}: {value:.3f}")
    payload = dict(
        settings=dict(
            n=a.n,
            generations=a.generations,
            rounds=a.rounds,
            pycma_generations=a.pycma_generations,
            strategy="cma_es",
            objective="rotated ellipsoid (benchmarks/common.py), float32",
        ),
        seconds_per_generation=per_gen,
        ratio_on_over_off=ratios,
        target="ratio k100 <= 1.10",
        meets_target=bool(ratios["k100"] <= 1.10),
        warmup_seconds=warmup,
    )
    name = "progress_overhead_tiny_cpu" if a.tiny else "progress_overhead_cpu"
    write(name if a.n == 10 or a.tiny else f"{name}_n{a.n}", payload)


if __name__ == "__main__":
    main()
