"""Populations and sweeps split over devices (issue 14 "Devices").

JAX fixes its device count when it starts, so each case runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (host CPU devices; the same code runs
on GPUs and TPUs). In float64, a sharded run must equal the single-device run with the same
keys to 1e-9 relative after 15 generations: the split reductions add in another order
(~1e-16 per step). float32 is not compared over many generations: C starts near isotropic
(eigenvalue gaps ~1e-4/n relative), so a 1e-7 rounding difference rotates the
eigenvectors and the runs diverge, sharded or merely batched.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

_SCRIPT = textwrap.dedent(
    """
    import json, re, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import evojax_cma as ec

    devices, cases = int(sys.argv[1]), sys.argv[2].split(",")
    assert jax.device_count() == devices and jax.config.jax_threefry_partitionable
    sh = ec.population_sharding()
    n, out = 6, {}

    def f(x):
        return jnp.sum(jnp.arange(1.0, n + 1) * (x - 0.5) ** 2)

    def rel(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))

    def compare(name, run):
        a, b = run(sh), run(None)
        out[name] = {
            "mean": rel(a.state.mean, b.state.mean),
            "sigma": rel(a.state.sigma, b.state.sigma),
            "best_f": rel(a.best_f, b.best_f),
            "evals": int(np.asarray(a.state.evals).sum()) - int(np.asarray(b.state.evals).sum()),
            "sharding": list(map(str, a.state.mean.sharding.spec)),
        }
        if hasattr(a.state, "C"):
            out[name]["C"] = rel(a.state.C, b.state.C)

    cma, oes = ec.cma_es(n, 16), ec.open_es(n, 32, chunk_size=16, learning_rate=0.05)
    oes_mirrored = ec.open_es(n, 64, learning_rate=0.05)
    x0 = jnp.ones(n)
    if "cma_es" in cases:
        compare("cma_es", lambda s: ec.minimize(
            cma, f, jax.random.key(1), x0, 0.5, generations=15, sharding=s))
        try:  # a population the device count does not divide
            ec.minimize(ec.cma_es(n, 12), f, jax.random.key(0), x0, 0.5, generations=2,
                        sharding=sh)
            out["indivisible"] = None
        except ValueError as e:
            out["indivisible"] = str(e)
    if "sep_cma_es" in cases:
        compare("sep_cma_es", lambda s: ec.minimize(
            ec.sep_cma_es(n, 16), f, jax.random.key(5), x0, 0.5, generations=15, sharding=s))
    if "open_es_mirrored" in cases:  # the default: mirrored, one chunk, the whole population
        compare("open_es_mirrored", lambda s: ec.minimize(
            oes_mirrored, f, jax.random.key(4), x0, 0.1, generations=15, sharding=s))
    if "open_es_chunked" in cases:
        compare("open_es_chunked", lambda s: ec.minimize(
            oes, f, jax.random.key(2), x0, 0.1, generations=15, chunked=True, sharding=s))
    if "sweep" in cases:
        keys = jax.random.split(jax.random.key(3), 8)
        sweep = jax.jit(jax.vmap(lambda k: ec.minimize(cma, f, k, x0, 0.5, generations=15)))
        a, b = sweep(ec.shard_runs(keys, sh)), sweep(keys)
        out["sweep"] = {"mean": rel(a.state.mean, b.state.mean), "C": rel(a.state.C, b.state.C),
                        "sharding": list(map(str, a.state.mean.sharding.spec))}

    def collectives(fn):  # (op, result shape) of every collective of the compiled program
        txt = jax.jit(fn).lower(jax.random.key(0)).compile().as_text()
        pat = r"= (.*?) (all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)"
        return [(m.group(2), m.group(1)) for m in re.finditer(pat + r"(?:-start)?\\(", txt)]

    if "hlo" in cases:
        out["hlo_cma"] = collectives(
            lambda k: ec.minimize(cma, f, k, x0, 0.5, generations=3, sharding=sh))
        out["hlo_sep"] = collectives(lambda k: ec.minimize(
            ec.sep_cma_es(n, 16), f, k, x0, 0.5, generations=3, sharding=sh))
    if "hlo_mirrored" in cases:
        out["hlo_open_es_mirrored"] = collectives(
            lambda k: ec.minimize(oes_mirrored, f, k, x0, 0.1, generations=3, sharding=sh))
    if "hlo_more" in cases:
        for mirrored in (True, False):
            oes_big = ec.open_es(n, 64, chunk_size=32, antithetic=mirrored)
            out[f"hlo_open_es_{mirrored}"] = collectives(lambda k: ec.minimize(
                oes_big, f, k, x0, 0.1, generations=3, chunked=True, sharding=sh))
        out["hlo_sweep"] = collectives(lambda k: jax.vmap(
            lambda kk: ec.minimize(cma, f, kk, x0, 0.5, generations=3))(
            jax.lax.with_sharding_constraint(jax.random.split(k, 8), sh.split(1))))
    print("RESULT" + json.dumps(out))
    """
)


ALL = "cma_es,sep_cma_es,open_es_mirrored,open_es_chunked,sweep"


def run_on_devices(devices, cases=ALL, timeout=900):
    """Run `_SCRIPT` with `devices` forced host devices; its JSON result."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(devices), cases],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def _check_equal(out, devices):
    for case in set(ALL.split(",")) & set(out):
        for field, value in out[case].items():
            if field == "sharding":
                continue
            tol = 0 if field == "evals" else 1e-9
            assert abs(value) <= tol, (devices, case, field, value)
    # the population's reductions leave replicated results; a sweep's stay split by run
    if "cma_es" in out:
        assert out["cma_es"]["sharding"] == []
    if "sweep" in out and devices > 1:  # one device: JAX reports P()
        assert out["sweep"]["sharding"][:1] == ["pop"]


def _shapes(collectives, op):
    return [re.sub(r"\{[^}]*\}", "", shape) for kind, shape in collectives if kind == op]


def _sizes(collectives):
    """(op, shape) of every array a collective moves (a tuple operand gives several)."""
    return [
        (kind, tuple(int(d) for d in dims.split(",") if d))
        for kind, shape in collectives
        for dims in re.findall(r"[a-z]+[0-9]*\[([0-9,]*)\]", shape)
    ]


def _no_noise_moved(collectives, lam, n):
    """Only fitness values (at most λ numbers) and n-vectors cross devices: no rows of points.

    Mirrored noise laid out ``[e; -e]`` moved ``e`` (an all-gather of ``(λ/2, n)``).
    """
    moved = _sizes(collectives)
    assert moved, collectives  # the fitness values must be gathered: the parse works
    for kind, dims in moved:
        assert len(dims) < 2 or dims[-1] != n, (kind, dims)
        assert int(np.prod(dims)) <= lam, (kind, dims)


def _no_population_gathered(collectives, lam, n):
    """No collective of a (λ, n) operand, and no all-gather of rows of points (``[..., n]``).

    Fitness values may be gathered (``[λ]``, or ``[chunks, chunk]`` when chunked).
    """
    for kind, shape in collectives:
        assert f"[{lam},{n}]" not in shape and f"[{n},{lam}]" not in shape, (kind, shape)
    gathered = _shapes(collectives, "all-gather")
    assert not [s for s in gathered if s.endswith(f",{n}]")], collectives


def test_sharded_cma_es_open_es_and_sweep_equal_one_device_on_8_devices():
    """Equal runs on 8 devices; the compiled CMA-ES and OpenAI-ES never move the population."""
    out = run_on_devices(8, "cma_es,sep_cma_es,open_es_mirrored,sweep,hlo,hlo_mirrored")
    assert set(out) >= {"cma_es", "sep_cma_es", "open_es_mirrored", "sweep"}
    _check_equal(out, 8)
    assert "popsize=12 is not divisible by the 8 devices" in out["indivisible"]
    hlo = out["hlo_cma"]
    _no_population_gathered(hlo, 16, 6)
    # only the 16 fitness values are gathered (for the ranking); the weighted mean and
    # the rank-mu sum (6 x 6) are reduced; nothing is redistributed
    assert "f64[16]" in _shapes(hlo, "all-gather")
    assert any("f64[6,6]" in s for s in _shapes(hlo, "all-reduce"))
    assert not _shapes(hlo, "all-to-all") and not _shapes(hlo, "collective-permute")
    # sep-CMA-ES weights the rows where they lie too: only its 16 fitness values move
    sep = out["hlo_sep"]
    _no_population_gathered(sep, 16, 6)
    assert "f64[16]" in _shapes(sep, "all-gather")
    # Mirrored OpenAI-ES (its default, λ = 64 over 8 devices): each device holds its pairs
    # (e, -e) on neighbouring rows, so no noise crosses devices; the 64 fitness values do
    mirrored = out["hlo_open_es_mirrored"]
    _no_noise_moved(mirrored, 64, 6)
    assert "f64[64]" in _shapes(mirrored, "all-gather")
    assert not _shapes(mirrored, "all-to-all") and not _shapes(mirrored, "collective-permute")


@pytest.mark.slow
def test_chunked_open_es_equal_and_never_gathered_on_8_devices():
    out = run_on_devices(8, "open_es_chunked,hlo_more")
    _check_equal(out, 8)
    assert "open_es_chunked" in out
    plain, mirrored = out["hlo_open_es_False"], out["hlo_open_es_True"]
    _no_population_gathered(plain, 32, 6)  # a chunk: 32 rows of 6
    _no_population_gathered(plain, 64, 6)
    # chunked, mirrored or not: only the fitness values of the chunks ([2, 32]) move
    _no_noise_moved(plain, 64, 6)
    _no_noise_moved(mirrored, 64, 6)
    _no_population_gathered(out["hlo_sweep"], 16, 6)  # each run's population stays whole
    assert not _shapes(out["hlo_sweep"], "all-to-all")


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2, 4])
def test_sharded_runs_equal_on_other_device_counts(devices):
    out = run_on_devices(devices)
    _check_equal(out, devices)
    assert (out["indivisible"] is None) == (12 % devices == 0)
