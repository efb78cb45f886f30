"""What `evojax_cma.core.prng` saves: threefry unrolled against XLA:CPU's rolled loop.

JAX lowers the threefry hash on CPU as a 5-iteration loop; `evojax_cma.core.prng` hands
``jax.random`` the same hash written out, bit for bit the same draws. Two tables, each
side timed in alternation with the other (`interleaved_times`), compile time included:

- ``sampler``: ``jax.random.normal`` against ``prng.normal`` for shapes an ES draws per
  generation, G draws in one compiled ``lax.scan`` (the draws are summed, so that none is
  dead code);
- ``generation``: `evojax_cma.minimize` for G generations on the rotated ellipsoid
  (``common.rotated_ellipsoid``, a regime where runs are still at work) with the library
  as it is against the library with `prng` switched off (``prng._unrolled`` patched to
  defer to ``jax.random`` while tracing), for CMA-ES (n = 10, 1 and 100 vmapped runs;
  n = 100) and OpenAI-ES (n = 100, λ = 64). Both sides compute the same numbers.

Usage: python benchmarks/prng_unrolled.py [--quick]
Writes benchmarks/results/prng_unrolled_cpu.json (``--quick``: prng_unrolled_quick_cpu.json).
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import evojax_cma as ec
from evojax_cma.core import prng

from common import interleaved_times, rotated_ellipsoid, write


def compiled(fn, *args):
    """(the compiled call, compile seconds) with the output checked finite once."""
    t0 = time.perf_counter()
    c = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    out = jax.block_until_ready(c(*args))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(out))
    return c, seconds


def rolled(fn, *args):
    """`compiled` with `prng` deferring to ``jax.random`` (the rolled loop) while tracing.

    JAX's caches are cleared before and after: jitted functions inside the library keep
    the programs they traced, which would otherwise be reused by the other side.
    """
    original = prng._unrolled
    prng._unrolled = lambda key: None
    jax.clear_caches()
    try:
        return compiled(fn, *args)
    finally:
        prng._unrolled = original
        jax.clear_caches()


def draws_summed(draw, shape, gens):
    """A function of a key: the sum of `gens` draws ``draw(k, shape)`` in one ``lax.scan``."""

    def step(acc, k):
        return acc + jnp.sum(draw(k, shape)), None

    def run(key):
        return jax.lax.scan(step, 0.0, jax.random.split(key, gens))[0]

    return run


def side_by_side(rolled_side, unrolled_side, args, units, rounds):
    """Both compiled sides (``(call, compile s)``) timed in alternation on `args`.

    Returns µs per unit (one draw, or one run-generation), compile seconds, and the ratio.
    The two sides must compute the same numbers: checked first.
    """
    (c_jax, s_jax), (c_ours, s_ours) = rolled_side, unrolled_side
    np.testing.assert_array_equal(c_jax(*args), c_ours(*args))
    t = interleaved_times(
        dict(
            rolled=lambda: jax.block_until_ready(c_jax(*args)),
            unrolled=lambda: jax.block_until_ready(c_ours(*args)),
        ),
        rounds=rounds,
    )
    return dict(
        us={k: v / units * 1e6 for k, v in t.items()},
        compile_s=dict(rolled=s_jax, unrolled=s_ours),
        unrolled_over_rolled=t["unrolled"] / t["rolled"],
    )


def report(label, timing):
    us, s = timing["us"], timing["compile_s"]
    print(
        f"{label:34s} rolled {us['rolled']:8.2f} us  unrolled {us['unrolled']:8.2f} us  "
        f"ratio {timing['unrolled_over_rolled']:.2f}  "
        f"compile {s['rolled']:.2f}/{s['unrolled']:.2f} s",
        flush=True,
    )


def sampler_rows(quick):
    rows = []
    for shape in [(10, 10), (17, 100), (64, 100), (1000, 10), (100, 1000)]:
        gens = max(20, (200 if quick else 2000) * 100 // max(100, shape[0] * shape[1] // 10))
        key = jax.random.key(0)
        timing = side_by_side(
            compiled(draws_summed(jax.random.normal, shape, gens), key),
            compiled(draws_summed(prng.normal, shape, gens), key),
            (key,),
            gens,
            5 if quick else 9,
        )
        rows.append(dict(shape=list(shape), draws=gens, per="draw", **timing))
        report(f"normal{shape}", timing)
    return rows


def generation_rows(quick):
    rows = []
    cases = [
        ("cma_es", 10, None, 1, 300),
        ("cma_es", 10, None, 100, 100),
        ("cma_es", 100, None, 1, 60),
        ("open_es", 100, 64, 1, 300),
    ]
    for kind, n, lam, runs, gens in cases:
        gens = max(10, gens // 5) if quick else gens
        es = ec.cma_es(n, lam) if kind == "cma_es" else ec.open_es(n, lam)
        f = rotated_ellipsoid(n)

        def one(key, es=es, f=f, n=n, gens=gens):
            r = ec.minimize(es, f, key, jnp.full(n, 3.0), 1.0, batched=True, generations=gens)
            return r.best_f

        keys = jax.random.split(jax.random.key(1), runs)
        fn = jax.vmap(one)
        rolled_side = rolled(fn, keys)  # first: `rolled` clears the caches after itself
        timing = side_by_side(
            rolled_side, compiled(fn, keys), (keys,), gens * runs, 5 if quick else 9
        )
        rows.append(
            dict(
                strategy=kind,
                n=n,
                popsize=es.popsize,
                runs=runs,
                generations=gens,
                per="run-generation",
                **timing,
            )
        )
        report(f"{kind} n={n} lam={es.popsize} runs={runs}", timing)
    return rows


def main():
    quick = "--quick" in sys.argv
    payload = dict(sampler=sampler_rows(quick), generation=generation_rows(quick))
    write("prng_unrolled_quick_cpu" if quick else "prng_unrolled_cpu", payload)


if __name__ == "__main__":
    main()
