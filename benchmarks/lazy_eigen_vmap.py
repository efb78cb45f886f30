"""The lazy eigendecomposition's saving must survive vmap.

Time per generation with pycma's eigen gap (default) against eigen_gap = 0 (decompose every
generation), for 1 run and for vmapped runs. If vmap turned the refresh into a select, the
default would cost as much as gap 0 in the vmapped case. Usage: python benchmarks/lazy_eigen_vmap.py
"""

import jax
import jax.numpy as jnp

import evojax_cma as ec

from common import median_time, write


def runner(es, params, runs, gens):
    def one(key):
        state = es.init(key, jnp.ones(es.num_dims), 0.5, params)

        def step(state, k):
            x, state = es.ask(k, state)
            return es.tell(state, x, jnp.sum(x**2, axis=-1)), None

        state, _ = jax.lax.scan(step, state, jax.random.split(key, gens))
        return state.mean  # depends on every generation: nothing is dead code

    keys = jax.random.split(jax.random.key(0), runs)
    fn = jax.jit(jax.vmap(one)).lower(keys).compile()
    jax.block_until_ready(fn(keys))
    return median_time(lambda: jax.block_until_ready(fn(keys))) / gens


def main():
    rows = []
    print(f"{'n':>4} {'gap':>5} {'runs':>5} {'lazy ms/gen':>12} {'gap0 ms/gen':>12} {'saving':>7}")
    for n, gens in [(100, 200), (300, 60)]:
        es = ec.cma_es(n)
        lazy = es.default_params()
        eager = lazy._replace(eigen_gap=jnp.zeros_like(lazy.eigen_gap))
        for runs in (1, 16):
            t_lazy = runner(es, lazy, runs, gens)
            t_eager = runner(es, eager, runs, gens)
            rows.append(
                dict(
                    n=n,
                    popsize=es.popsize,
                    eigen_gap=float(lazy.eigen_gap),
                    runs=runs,
                    ms_per_generation=dict(lazy=t_lazy * 1e3, every_generation=t_eager * 1e3),
                    saving=t_eager / t_lazy,
                )
            )
            print(
                f"{n:4d} {float(lazy.eigen_gap):5.2f} {runs:5d} {t_lazy * 1e3:12.3f} "
                f"{t_eager * 1e3:12.3f} {t_eager / t_lazy:7.2f}",
                flush=True,
            )
    write("lazy_eigen_vmap_cpu", dict(rows=rows))


if __name__ == "__main__":
    main()
