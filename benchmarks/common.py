"""Shared helpers: environment description, timing, JSON output."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def environment() -> dict:
    versions = {}
    for pkg in ("jax", "jaxlib", "numpy", "cma", "cmaes", "evosax", "evojax_cma"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = jax.devices()[0]
    return dict(
        machine=dict(cpu=cpu, cores=os.cpu_count(), system=platform.platform()),
        device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        x64=bool(jax.config.jax_enable_x64),
        versions=versions,
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
    )


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_times(calls: dict, rounds: int = 7) -> dict:
    """Median seconds of each zero-argument call in `calls`, timed in alternation.

    Every round times each call once, so that all sides see the same machine load (these
    machines are shared and noisy; ratios are only meaningful measured side by side).
    """
    times: dict = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def write(name: str, payload: dict) -> pathlib.Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=1))
    print(f"wrote {path}")
    return path


def rotated_ellipsoid(n: int, seed: int = 0, xp=jnp):
    """Batched f(x) = sum_i 1e6^(i/(n-1)) (R x)_i^2, R a fixed random rotation.

    ``xp=jnp`` (float32, for the JAX sides) or ``xp=np`` (float64, for pycma).

    From x0 = 3 with sigma0 = 1 no CMA-ES run solves it within the few hundred
    generations the speed benchmarks time: every timed generation does the full work
    (a converged run's generation gets cheaper once its steps underflow in float32).
    """
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    dtype = jnp.float32 if xp is jnp else np.float64
    rot = xp.asarray(q, dtype)
    scales = xp.asarray(1e6 ** (np.arange(n) / (n - 1)), dtype)

    def f(x):
        return xp.sum(scales * (x @ rot.T) ** 2, axis=-1)

    return f
