"""A Jacobi eigensolver batched across runs against LAPACK ``eigh``: issue 14's lever.

Issue 14 listed, among the levers worth measuring for small n, "an eigensolver vectorised
across the runs of a batch (Jacobi sweeps written in JAX), decomposing from the previous
eigenbasis". `jacobi_eigh` is that solver. It lived in ``evojax_cma/core/linalg.py`` while
it was measured; it never paid for itself, so it is kept here, beside the measurement,
rather than as unused code in the package.

What is timed, per decomposition (one ``n x n`` matrix), interleaved (`interleaved_times`):
``jnp.linalg.eigh`` against `jacobi_eigh` started from the previous eigenbasis
(``jacobi_near``) and from the identity (``jacobi_scratch``), for n in {4, 10, 20} and
batches of {1, 100, 1000} matrices in float32, and n = 10 in float64. Each matrix is one
CMA-sized update (the package's default ``c1 + c_mu``, pycma's) away from the matrix whose
exact eigenbasis is the start, along a trajectory of G updates; each timed call is one
compiled ``lax.scan`` over the G decompositions of the batch. Before any timing, every
result of every side is checked against ``numpy.linalg.eigh`` in float64 (eigenvalues,
reconstruction, orthogonality, within ``10 n eps ‖C‖``): a wrong solver stops the script.

Outcome so far (2-core AMD EPYC shared with other jobs, jax 0.10.2 CPU; issue 14 notes):
one matrix, Jacobi is 1.7-7x slower than ``eigh``; batched float32 at n = 10-20 it takes
0.55-0.95x ``eigh``'s time, float64 about 1x. Wired into the whole vmapped CMA-ES
generation (n = 10, popsize 10, 100 runs, float32) it gained nothing: 22.3-23.2 µs per run
and generation against 22.0-22.4 with ``eigh`` (a loaded machine, ~1.7x slower than the
quiet one of ``profile_generation_cpu.json``). A generation without any decomposition
costs 5.9 µs against evosax's 14.1 (``profile_generation_cpu.json``), so reaching half of
evosax's time would need a decomposition of ~1.2 µs, well below both solvers.

Usage: python benchmarks/eigensolver_lever.py [--quick]
Writes benchmarks/results/eigensolver_lever_cpu.json (``--quick``:
eigensolver_lever_quick_cpu.json), with Jacobi's time over ``eigh``'s per row and a
conclusion computed from the numbers.
"""

from __future__ import annotations

import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

jax.config.update("jax_enable_x64", True)  # the float64 rows; float32 arrays stay float32

import evojax_cma as ec  # noqa: E402

from common import RESULTS, interleaved_times, write  # noqa: E402

JACOBI_CHUNK = 64
"""Matrices per vectorised Jacobi call: larger batches are split, so that the working set
(three ``(n, n, chunk)`` arrays) stays in cache; 1000 matrices at once ran ~2x slower
per matrix than 100 (float64, n = 10)."""

JACOBI_MAX_SWEEPS = 20
"""Cap on the Jacobi sweeps; from scratch float64 needs up to ~10 at n = 12, from the
previous basis 2-4."""


def _round_robin(m: int) -> list[np.ndarray]:
    """Orders of ``range(m)`` (m even) that put round r's pairs at positions ``(2k, 2k+1)``.

    The circle method of a round-robin tournament: ``m - 1`` rounds of ``m / 2`` disjoint
    pairs, every pair of indices meeting once.
    """
    players, orders = list(range(m)), []
    for _ in range(m - 1):
        orders.append(np.array([p for i in range(m // 2) for p in (players[i], players[-1 - i])]))
        players = [players[0], players[-1], *players[1:-1]]
    return orders


def jacobi_eigh(C: Array, B_old: Array) -> tuple[Array, Array]:
    """Eigendecomposition of symmetric ``C`` by parallel Jacobi sweeps from the basis ``B_old``.

    ``A = B_oldᵀ C B_old`` is nearly diagonal when C changed little since ``B_old`` was
    computed, and cyclic Jacobi converges quadratically from there. Each round of a sweep
    rotates ``n / 2`` disjoint pairs (round-robin order) at once, as elementwise operations
    on the whole batch, laid out batch-last so that they vectorise across runs. Sweeps stop,
    per matrix, when ``‖offdiag(A)‖ <= eps ‖diag(A)‖`` (so every eigenvalue is within
    ``eps ‖A‖`` of a diagonal entry, as for a backward stable ``eigh``) or after
    `JACOBI_MAX_SWEEPS`; a matrix that has converged is left untouched while others go on,
    so a row's result does not depend on the other rows of its batch. ``B_old`` is first
    made orthogonal to rounding by one Newton-Schulz step, so that products of many
    Jacobi bases do not drift from orthogonality.

    Not used by the package's ``core/linalg.py`` (issue 14; 2-core AMD EPYC shared with
    other jobs, jax 0.10.2 CPU, medians of interleaved repeats). Per decomposition of a
    matrix one CMA-ES update from the previous basis (2-3 sweeps), Jacobi over ``eigh``: one
    matrix 1.7-7 (n = 4-40); 100-1000 matrices 0.55-0.95 in float32 for n = 10-20, 0.95-1.13
    in float64 at n = 10, 1.0-2.8 at n = 4, about 2 at n = 20 (float64) and 2-3 at n = 40;
    from scratch (5-10 sweeps) 1-5 for n <= 20 in batches. The whole vmapped generation
    (n = 10, popsize 10, 100 runs, 300 generations, float32) was no faster: 22.3-23.2 µs per
    run and generation against 22.0-22.4 with ``eigh``. A round costs ~0.17 µs per 10 x 10
    matrix (half of it the permutation to the next round's pairs) and a decomposition takes
    ~27 rounds, about what LAPACK needs for the whole ``eigh``. Wiring it in for batches
    only (the ``refresh_eigensystem`` vmap rule is where the batch size is known) also needs
    the eigenvectors' signs fixed the same way on both paths (e.g. by their largest overlap
    with ``B_old``), or a run alone and the same run in a batch sample different points.

    Args:
      C: ``batch + (n, n)`` symmetric matrices.
      B_old: ``batch + (n, n)`` nearly orthogonal starting bases (columns).

    Returns:
      ``(eigvals, B)``: ascending eigenvalues ``batch + (n,)`` and matching eigenvectors
      ``batch + (n, n)`` (columns), like ``jnp.linalg.eigh``.
    """
    batch, n = C.shape[:-2], C.shape[-1]
    b = math.prod(batch)
    C, B_old = C.reshape(b, n, n), B_old.reshape(b, n, n).astype(C.dtype)
    if b <= JACOBI_CHUNK:
        eigvals, B = _jacobi_chunk(C, B_old)
    else:  # chunks that stay in cache, padded with identities (no sweep needed)
        k = -(-b // JACOBI_CHUNK)
        eye = jnp.broadcast_to(jnp.eye(n, dtype=C.dtype), (k * JACOBI_CHUNK - b, n, n))
        C, B_old = (jnp.concatenate([x, eye]).reshape(k, JACOBI_CHUNK, n, n) for x in (C, B_old))
        eigvals, B = lax.map(lambda cb: _jacobi_chunk(*cb), (C, B_old))
        eigvals, B = eigvals.reshape(-1, n)[:b], B.reshape(-1, n, n)[:b]
    return eigvals.reshape(*batch, n), B.reshape(*batch, n, n)


def _jacobi_chunk(C: Array, B0: Array) -> tuple[Array, Array]:
    """`jacobi_eigh` of ``(b, n, n)`` matrices, all at once."""
    b, n = C.shape[0], C.shape[-1]
    dtype = C.dtype
    eps = jnp.finfo(dtype).eps
    eye = jnp.broadcast_to(jnp.eye(n, dtype=dtype), (b, n, n))
    B0 = B0 @ (1.5 * eye - 0.5 * (jnp.swapaxes(B0, -1, -2) @ B0))
    A = jnp.swapaxes(B0, -1, -2) @ C @ B0
    A = jnp.moveaxis(0.5 * (A + jnp.swapaxes(A, -1, -2)), 0, -1)  # (n, n, b)
    m = n + n % 2  # odd n: a padding index with zero off-diagonal, never rotated
    h = m // 2
    if m != n:
        A = jnp.pad(A, ((0, 1), (0, 1), (0, 0)))
    V = jnp.broadcast_to(jnp.eye(m, dtype=dtype)[:, :, None], (m, m, b))
    # Static permutations: natural order -> round 0's order -> ... -> natural order.
    gathers, previous = [], np.arange(m)
    for order in _round_robin(m):
        gathers.append(np.argsort(previous)[order])
        previous = order
    gathers.append(np.argsort(previous))
    pair = np.zeros((h, 2, h, 2, 1), bool)
    pair[np.arange(h), 0, np.arange(h), 1] = pair[np.arange(h), 1, np.arange(h), 0] = True
    pair_entries = jnp.asarray(pair)
    off_diagonal = jnp.asarray(~np.eye(m, dtype=bool)[:, :, None])

    def rotate(A: Array, V: Array) -> tuple[Array, Array]:
        # Golub & Van Loan, Algorithm 8.5.1: zero a_pq for p = 2k, q = 2k+1, |θ| <= π/4.
        A4 = A.reshape(h, 2, h, 2, b)
        k = np.arange(h)
        app, aqq, apq = A4[k, 0, k, 0], A4[k, 1, k, 1], A4[k, 0, k, 1]
        zero = apq == 0
        tau = (aqq - app) / (2 * jnp.where(zero, 1, apq))
        sign = jnp.where(tau >= 0, 1, -1).astype(dtype)
        t = jnp.where(zero, 0, sign / (jnp.abs(tau) + jnp.hypot(jnp.ones_like(tau), tau)))
        c = lax.rsqrt(1 + t * t)
        s = t * c
        ci, si, cj, sj = c[:, None], s[:, None], c[None], s[None]
        P, Q, R, S = A4[:, 0, :, 0], A4[:, 0, :, 1], A4[:, 1, :, 0], A4[:, 1, :, 1]
        p0, p1, q0, q1 = ci * P - si * R, ci * Q - si * S, si * P + ci * R, si * Q + ci * S
        rows_p = jnp.stack([cj * p0 - sj * p1, sj * p0 + cj * p1], 2)
        rows_q = jnp.stack([cj * q0 - sj * q1, sj * q0 + cj * q1], 2)
        A = jnp.where(pair_entries, 0, jnp.stack([rows_p, rows_q], 1)).reshape(m, m, b)
        W = V.reshape(m, h, 2, b)
        w0, w1 = W[:, :, 0], W[:, :, 1]
        V = jnp.stack([c[None] * w0 - s[None] * w1, s[None] * w0 + c[None] * w1], 2)
        return A, V.reshape(m, m, b)

    def sweep(A: Array, V: Array) -> tuple[Array, Array]:
        for r, g in enumerate(gathers):
            A, V = jnp.take(jnp.take(A, g, axis=0), g, axis=1), jnp.take(V, g, axis=1)
            if r < m - 1:
                A, V = rotate(A, V)
        return A, V

    def unconverged(A: Array) -> Array:
        d = jnp.diagonal(A, axis1=0, axis2=1)
        off = jnp.where(off_diagonal, A, 0)
        return jnp.sum(off * off, axis=(0, 1)) > eps * eps * jnp.sum(d * d, axis=-1)

    def body(carry):
        A, V, sweeps, active = carry
        A2, V2 = sweep(A, V)
        A, V = jnp.where(active, A2, A), jnp.where(active, V2, V)
        return A, V, sweeps + 1, active & unconverged(A)

    def cond(carry):
        return jnp.any(carry[3]) & (carry[2] < JACOBI_MAX_SWEEPS)

    start = (A, V, jnp.asarray(0, jnp.int32), unconverged(A))
    A, V, _, _ = lax.while_loop(cond, body, start)
    eigvals = jnp.diagonal(A, axis1=0, axis2=1)[:, :n]  # (b, n)
    order = jnp.argsort(eigvals, axis=-1)
    V = jnp.take_along_axis(jnp.moveaxis(V, -1, 0)[:, :n, :n], order[:, None, :], axis=-1)
    eigvals = jnp.take_along_axis(eigvals, order, axis=-1)
    return eigvals, B0 @ V


SOLVERS = {
    "eigh": lambda C, B_old: jnp.linalg.eigh(C),
    "jacobi_near": jacobi_eigh,
    "jacobi_scratch": lambda C, B_old: jacobi_eigh(
        C, jnp.broadcast_to(jnp.eye(C.shape[-1], dtype=C.dtype), C.shape)
    ),
}
"""Each side as ``(C, B_old) -> (eigvals, B)``: ``B_old`` is the previous exact basis."""

CONFIGS = [("float32", n, b) for n in (4, 10, 20) for b in (1, 100, 1000)]
CONFIGS += [("float64", 10, b) for b in (1, 100, 1000)]
QUICK_CONFIGS = [("float32", 4, 1), ("float32", 10, 100), ("float64", 10, 100)]


def near_trajectory(n: int, b: int, G: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(Cs, Bs)``, float64 ``(G, b, n, n)``: G CMA-sized updates of b covariances.

    Each of the b trajectories starts from ``q diag(logspace(0, 4, n)) qᵀ`` (q a random
    rotation) and takes rank-one and rank-mu updates with the package's default ``c1``,
    ``c_mu``, popsize and positive weights (pycma's), from steps drawn with the current C.
    ``Bs[g]`` is the exact eigenbasis of the matrix before ``Cs[g]``: the basis a CMA-ES run
    kept.
    """
    es = ec.cma_es(n)
    params = es.default_params()
    lam, c1, cmu = es.popsize, float(params.c1), float(params.c_mu)
    w = np.asarray(params.weights, np.float64)
    w = w[w > 0]
    mu = len(w)
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((b, n, n)))[0]
    C = (q * np.logspace(0, 4, n)) @ np.swapaxes(q, -1, -2)
    Cs = [C]
    for _ in range(G):
        L = np.linalg.cholesky(C)
        y = (L @ rng.standard_normal((b, n, lam)))[..., :mu]
        pc = L @ rng.standard_normal((b, n, 1))
        C = (
            (1 - c1 - cmu) * C
            + c1 * pc @ np.swapaxes(pc, -1, -2)
            + cmu * (y * w) @ np.swapaxes(y, -1, -2)
        )
        Cs.append(C)
    Cs = np.stack(Cs)
    return Cs[1:], np.linalg.eigh(Cs[:-1])[1]


def max_error_over_tolerance(C: np.ndarray, eigvals, B) -> float:
    """Largest error of ``(eigvals, B)`` for the matrices C, in units of its tolerance.

    The tolerance is ``10 n eps ‖C‖`` for the eigenvalues (against ``numpy.linalg.eigh`` in
    float64) and the reconstruction ``B diag(eigvals) Bᵀ - C``, ``10 n eps`` for
    ``BᵀB - I``; a backward stable ``eigh`` stays within about a tenth of it. Unsorted
    eigenvalues count as an infinite error.
    """
    n, eps = C.shape[-1], float(np.finfo(C.dtype).eps)
    C, eigvals, B = (np.asarray(x, np.float64) for x in (C, eigvals, B))
    exact = np.linalg.eigvalsh(C)
    norm = np.max(np.abs(exact), axis=-1)
    tol = 10 * n * eps
    if np.any(np.diff(eigvals, axis=-1) < 0):
        return math.inf
    errors = [
        np.max(np.abs(eigvals - exact), axis=-1) / norm,
        np.max(np.abs((B * eigvals[..., None, :]) @ np.swapaxes(B, -1, -2) - C), axis=(-2, -1))
        / norm,
        np.max(np.abs(np.swapaxes(B, -1, -2) @ B - np.eye(n)), axis=(-2, -1)),
    ]
    return float(max(np.max(e) for e in errors) / tol)


def compiled_sides(Cs: Array, Bs: Array) -> tuple[dict, dict]:
    """Per side, a compiled check call (every result) and a timed call (a sum of them).

    Both scan `SOLVERS`' function over the G batches; the timed one folds every eigenvalue
    and eigenvector entry into one number per matrix, so that none of the work is dead.
    """
    checks, calls = {}, {}
    for name, solve in SOLVERS.items():

        def results(Cs, Bs, solve=solve):
            return lax.scan(lambda _, cb: (None, solve(*cb)), None, (Cs, Bs))[1]

        def folded(Cs, Bs, solve=solve):
            def step(acc, cb):
                eigvals, B = solve(*cb)
                return acc + jnp.sum(eigvals, -1) + jnp.sum(B, (-2, -1)), None

            return lax.scan(step, jnp.zeros(Cs.shape[1], Cs.dtype), (Cs, Bs))[0]

        checks[name] = jax.jit(results).lower(Cs, Bs).compile()
        timed = jax.jit(folded).lower(Cs, Bs).compile()
        calls[name] = lambda timed=timed: jax.block_until_ready(timed(Cs, Bs))
    return checks, calls


def measure(dtype: str, n: int, b: int, quick: bool) -> dict:
    """One row: the checks, then µs per decomposition of each side, timed interleaved."""
    G = max(2, min(4, 400 // b)) if quick else max(2, min(20, 8000 // b))
    Cs, Bs = near_trajectory(n, b, G)
    Cs, Bs = Cs.astype(dtype), Bs.astype(dtype)
    Cs = (Cs + np.swapaxes(Cs, -1, -2)) / 2  # symmetric after rounding
    checks, calls = compiled_sides(jnp.asarray(Cs), jnp.asarray(Bs))
    errors = {}
    for name, check in checks.items():
        errors[name] = max_error_over_tolerance(Cs, *check(jnp.asarray(Cs), jnp.asarray(Bs)))
        if not errors[name] <= 1:
            raise AssertionError(
                f"{name}, {dtype} n={n} batch={b}: error {errors[name]:.3g} x the tolerance "
                "against numpy.linalg.eigh; not timed"
            )
    for call in calls.values():  # warm-up
        call()
    times = interleaved_times(calls, rounds=3 if quick else 7)
    us = {name: 1e6 * t / (G * b) for name, t in times.items()}
    row = dict(dtype=dtype, n=n, batch=b, generations=G, us_per_decomposition=us)
    row["jacobi_over_eigh"] = dict(
        near=us["jacobi_near"] / us["eigh"], scratch=us["jacobi_scratch"] / us["eigh"]
    )
    row["max_error_over_tolerance"] = errors
    print(
        f"{dtype} n={n} batch={b} G={G} | "
        + "  ".join(f"{k} {v:.2f}" for k, v in us.items())
        + " µs | jacobi/eigh near {near:.2f} scratch {scratch:.2f}".format(
            **row["jacobi_over_eigh"]
        ),
        flush=True,
    )
    return row


def decomposition_budget() -> float | None:
    """µs per decomposition that would bring the n = 10 generation to half of evosax's.

    From the 100-run row of ``profile_generation_cpu.json``: ``evosax / 2 - (ask+tell, no
    eigh)``. None if that file or row is missing.
    """
    try:
        rows = json.loads((RESULTS / "profile_generation_cpu.json").read_text())["rows"]
    except (OSError, KeyError, ValueError):
        return None
    for row in rows:
        if row["n"] == 10 and row["runs"] > 1:
            us = row["us_per_run_generation"]
            return us["evosax"] / 2 - us["ask+tell, no eigh"]
    return None


def conclusion(rows: list[dict]) -> str:
    """Whether Jacobi from the previous basis is worth wiring in, from the rows."""
    near = [(r["jacobi_over_eigh"]["near"], r) for r in rows]
    singles = [x for x, r in near if r["batch"] == 1]
    batched = [(x, r) for x, r in near if r["batch"] > 1 and r["n"] == 10]
    parts = []
    if singles:
        parts.append(f"one matrix: Jacobi/eigh {min(singles):.2f}-{max(singles):.2f}")
    if not batched:
        return "; ".join(parts) + "; no batched n = 10 row measured"
    best, row = min(batched, key=lambda xr: xr[0])
    parts.append(
        f"best batched n = 10: {best:.2f} ({row['dtype']}, batch {row['batch']}, "
        f"{row['us_per_decomposition']['jacobi_near']:.2f} µs per decomposition)"
    )
    budget = decomposition_budget()
    if budget is not None:
        parts.append(f"a generation at half of evosax's time needs ~{budget:.1f} µs")
    if best < 0.5:
        parts.append("a batched n = 10 row is below 0.5: worth wiring in and timing a generation")
    else:
        parts.append("no batched n = 10 row is below 0.5: not worth wiring into CMA-ES")
    return "; ".join(parts)


def main() -> None:
    quick = "--quick" in sys.argv
    rows = [measure(*config, quick) for config in (QUICK_CONFIGS if quick else CONFIGS)]
    text = conclusion(rows)
    print(text)
    name = "eigensolver_lever_quick_cpu" if quick else "eigensolver_lever_cpu"
    write(name, dict(rows=rows, conclusion=text))


if __name__ == "__main__":
    main()
