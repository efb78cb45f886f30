"""One sharded optimisation over two processes (issue 14 "Machines").

Two processes on localhost (loopback only, a free port) call ``jax.distributed.initialize``
and run the same ``minimize(..., sharding=ec.population_sharding())`` over the devices of
both (two host CPU devices each, four in all), with CPU collectives (gloo). Both must
agree with a single-process run of the same keys to 1e-9 relative (float64; the split
reductions add in another order). Bounded by a timeout; skipped, with the reason, only
if this jaxlib cannot run CPU collectives across processes.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    port, pid, nproc = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    if nproc > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                                   initialization_timeout=60)
    import jax.numpy as jnp, numpy as np
    import evojax_cma as ec
    n = 6
    def f(x):
        return jnp.sum(jnp.arange(1.0, n + 1) * (x - 0.5) ** 2)
    sh = ec.population_sharding() if nproc > 1 else None
    res = ec.minimize(ec.cma_es(n, 16), f, jax.random.key(1), jnp.ones(n), 0.5,
                      generations=15, sharding=sh)
    out = {"devices": jax.device_count(), "local": jax.local_device_count(),
           "mean": np.asarray(res.state.mean).tolist(), "C": np.asarray(res.state.C).tolist(),
           "sigma": float(res.state.sigma), "best_f": float(res.best_f),
           "evals": int(res.state.evals)}
    print("RESULT" + json.dumps(out), flush=True)
    if nproc > 1:
        jax.distributed.shutdown()
    """
)
_TIMEOUT = 300


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _result(stdout):
    line = next((x for x in stdout.splitlines() if x.startswith("RESULT")), None)
    return None if line is None else json.loads(line[len("RESULT") :])


@pytest.mark.slow  # ~20-80 s: three JAX processes start and compile
def test_two_processes_agree_with_one():
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, str(port), str(pid), "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(2),
        )
        for pid in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=_TIMEOUT))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    errors = " ".join(err for _, err in outputs)
    if any(p.returncode for p in procs) and "collectives" in errors.lower():
        if "not implemented" in errors.lower() or "unsupported" in errors.lower():
            pytest.skip(f"this jaxlib cannot run CPU collectives across processes: {errors[-300:]}")
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    single = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "0", "0", "1"],
        capture_output=True,
        text=True,
        env=_env(1),
        timeout=_TIMEOUT,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    reference = _result(single.stdout)
    for out, _ in outputs:
        run = _result(out)
        assert (run["devices"], run["local"]) == (4, 2)
        assert run["evals"] == reference["evals"] == 15 * 16
        for field in ("mean", "C", "sigma", "best_f"):
            a, b = np.asarray(run[field]), np.asarray(reference[field])
            assert np.max(np.abs(a - b)) <= 1e-9 * np.max(np.abs(b)), field
