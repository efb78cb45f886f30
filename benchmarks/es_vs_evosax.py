"""OpenAI-ES, variational, sep-CMA-ES and LM-MA-ES against evosax, in the same run.

Two measurements, both float32 and jit-compiled as one lax.scan per run:
1. time per generation (ask, sphere, tell) at n = 100, 1000, 10^4;
2. evaluations to a target: sep-CMA-ES vs evosax's Sep_CMA_ES on the separable ellipsoid
   (f < 1e-8, x0 = ones, sigma0 = 1) at n = 100 and 1000; OpenAI-ES vs evosax's Open_ES on the
   sphere (f < 1e-3 f(x0), same Adam learning rate and sigma schedule) at n = 100, 1000, 10^4.
Pairs: open_es/Open_ES, variational/PGPE and SNES (learned diagonal sigma), sep_cma_es/
Sep_CMA_ES, lm_ma_es/LM_MA_ES. Usage: python benchmarks/es_vs_evosax.py [--quick]
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import evojax_cma as ec
from evojax_cma.problems import ellipsoid

from common import interleaved_times, write

LR, SIGMA, LAM_GRAD = 0.02, 0.1, 100
SIGMA_DECAY, SIGMA_MIN = 0.995, 1e-4  # OpenAI-ES in the evaluations-to-target runs


def sphere_batch(x):
    return jnp.sum(x**2, axis=-1)


def elli_batch(x):
    return jax.vmap(ellipsoid)(x)


def ours_scan(es, fn, x0, sigma0, gens):
    def run(key):
        state = es.init(key, x0, sigma0)

        def step(state, k):
            x, state = es.ask(k, state)
            f = fn(x)
            return es.tell(state, x, f), jnp.min(f)

        return jax.lax.scan(step, state, jax.random.split(key, gens))[1]

    return jax.jit(run)


def evosax_scan(es, params, fn, x0, gens):
    def run(key):
        state = es.init(key, x0, params)

        def step(state, k):
            k1, k2 = jax.random.split(k)
            x, state = es.ask(k1, state, params)
            f = fn(x)
            state, _ = es.tell(k2, x, f, state, params)
            return state, jnp.min(f)

        return jax.lax.scan(step, state, jax.random.split(key, gens))[1]

    return jax.jit(run)


def evosax_pair(name, n, popsize, sigma0, decay=False):
    from evosax import algorithms as A  # noqa: N812

    sol = jnp.zeros(n)
    if name == "Open_ES":
        schedule = optax.constant_schedule(sigma0)
        if decay:  # the same geometric decay as ours: max(sigma_min, sigma0 * decay**t)
            schedule = optax.exponential_decay(sigma0, 1, SIGMA_DECAY, end_value=SIGMA_MIN)
        es = A.Open_ES(popsize, sol, optimizer=optax.adam(LR), std_schedule=schedule)
        return es, es.default_params
    es = getattr(A, name)(
        popsize, sol, **({"optimizer": optax.adam(LR)} if name in ("PGPE", "SNES") else {})
    )
    params = es.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=sigma0)
    return es, params


def ours(name, n, popsize, decay=False):
    if name == "open_es":
        if decay:
            return ec.open_es(
                n, popsize, learning_rate=LR, sigma_decay=SIGMA_DECAY, sigma_min=SIGMA_MIN
            )
        return ec.open_es(n, popsize, learning_rate=LR)
    if name == "variational":
        return ec.variational(n, popsize, learning_rate=LR, sigma_learning_rate=LR)
    if name == "sep_cma_es":
        return ec.sep_cma_es(n, popsize)
    return ec.lm_ma_es(n, popsize)


PAIRS = [
    ("open_es", "Open_ES", LAM_GRAD, SIGMA),
    ("variational", "PGPE", LAM_GRAD, SIGMA),
    ("variational", "SNES", LAM_GRAD, SIGMA),
    ("sep_cma_es", "Sep_CMA_ES", None, 1.0),
    ("lm_ma_es", "LM_MA_ES", None, 1.0),
]


def timing(dims, gens_of):
    rows = []
    print(f"{'n':>6} {'ours':<12} {'evosax':<11} {'lam':>4} {'ours ms':>9} {'evosax ms':>10} ratio")
    for n in dims:
        x0, gens = jnp.ones(n), gens_of(n)
        for mine, theirs, lam, s0 in PAIRS:
            lam = lam or 4 + int(3 * np.log(n))
            f_ours = ours_scan(ours(mine, n, lam), sphere_batch, x0, s0, gens)
            es, params = evosax_pair(theirs, n, lam, s0)
            f_theirs = evosax_scan(es, params, sphere_batch, x0, gens)
            key = jax.random.key(0)
            compiled, compile_s = {}, {}
            for label, f in (("ours", f_ours), ("evosax", f_theirs)):
                t0 = time.perf_counter()
                compiled[label] = f.lower(key).compile()
                compile_s[label] = time.perf_counter() - t0
                jax.block_until_ready(compiled[label](key))
            times = interleaved_times(
                {k: (lambda c=c, x=key: jax.block_until_ready(c(x))) for k, c in compiled.items()}
            )
            out = {k: (t / gens, compile_s[k]) for k, t in times.items()}
            ratio = out["ours"][0] / out["evosax"][0]
            rows.append(
                dict(
                    n=n,
                    ours=mine,
                    evosax=theirs,
                    popsize=lam,
                    generations=gens,
                    ms_per_generation=dict(
                        ours=out["ours"][0] * 1e3, evosax=out["evosax"][0] * 1e3
                    ),
                    compile_s=dict(ours=out["ours"][1], evosax=out["evosax"][1]),
                    ours_over_evosax=ratio,
                )
            )
            print(
                f"{n:6d} {mine:<12} {theirs:<11} {lam:4d} {out['ours'][0] * 1e3:9.3f} "
                f"{out['evosax'][0] * 1e3:10.3f} {ratio:.2f}",
                flush=True,
            )
    return rows


def first_hit(best, target):
    hit = np.nonzero(np.asarray(best) < target)[0]
    return int(hit[0]) + 1 if hit.size else None


def to_target(cases, seeds):
    rows = []
    print(f"{'n':>6} {'ours':<12} {'evosax':<11} generations to target per seed (None: not hit)")
    for mine, theirs, n, fn, target_rel, lam, s0, gens in cases:
        lam = lam or 4 + int(3 * np.log(n))
        x0 = jnp.ones(n)
        target = target_rel * float(fn(x0[None])[0]) if target_rel else 1e-8
        es, params = evosax_pair(theirs, n, lam, s0, decay=True)
        runs = dict(
            ours=jax.vmap(ours_scan(ours(mine, n, lam, decay=True), fn, x0, s0, gens)),
            evosax=jax.vmap(evosax_scan(es, params, fn, x0, gens)),
        )
        keys = jax.random.split(jax.random.key(1), seeds)
        best = {
            k: np.minimum.accumulate(np.asarray(jax.jit(r)(keys)), axis=1) for k, r in runs.items()
        }
        res = {k: [first_hit(b, target) for b in v] for k, v in best.items()}
        final = {k: [float(b[-1]) for b in v] for k, v in best.items()}
        med = {
            k: (float(np.median([g * lam for g in v])) if all(v) else None) for k, v in res.items()
        }
        rows.append(
            dict(
                n=n,
                ours=mine,
                evosax=theirs,
                function=fn.__name__,
                target=target,
                popsize=lam,
                max_generations=gens,
                generations=res,
                final_best_f=final,
                median_evaluations=med,
            )
        )
        print(
            f"{n:6d} {mine:<12} {theirs:<11} ours {res['ours']} evosax {res['evosax']} "
            f"median evals {med}",
            flush=True,
        )
    return rows


def main(quick=False):
    dims = (100, 1000) if quick else (100, 1000, 10_000)
    rows = timing(dims, lambda n: {100: 500, 1000: 200, 10_000: 60}[n])
    cases = [
        ("sep_cma_es", "Sep_CMA_ES", n, elli_batch, None, None, 1.0, g)
        for n, g in ((100, 40000), (1000, 60000))
    ]
    cases += [("open_es", "Open_ES", n, sphere_batch, 1e-3, LAM_GRAD, SIGMA, 1500) for n in dims]
    targets = to_target(cases, seeds=3 if quick else 5)
    write(
        "es_vs_evosax_cpu",
        dict(
            targets=(
                "ours at most evosax's time per generation; sep-CMA-ES fewer evaluations "
                "than evosax Sep_CMA_ES on the separable ellipsoid"
            ),
            timing=rows,
            to_target=targets,
        ),
    )


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
