"""Issue 13's pass marks on this CPU: train each shipped task with an ES, test the mean.

* digits MLP (`evojax_cma.tasks.DigitsMLP`): held-out accuracy >= 0.90 (Adam with
  backprop reaches ~0.97),
* CartPole-v1 (`evojax_cma.tasks.GymnaxControl`): mean return >= 475 over 100 test
  episodes,
* Pendulum-v1: mean return >= -250 over 100 test episodes.

Each run is one ``evojax_cma.minimize`` call (the whole loop jitted) with a keyed
objective (`evojax_cma.tasks.task_objective`, the task's loss on flat vectors: every
member draws its own minibatch or episodes), for exactly ``generations`` generations
(every other stopping rule off). The final *mean* of the search distribution is then
scored on held-out data or on test episodes whose keys the training never saw. Wall time
includes compilation.
Writes ``results/tasks_passmarks_cpu.json`` (``..._quick_cpu.json`` with ``--quick``).

    python benchmarks/tasks_passmarks.py [--quick] [--only digits cartpole] [--seeds 0 1]

``--quick`` runs every task at tiny settings (a smoke test of the script, ~1-2 minutes on
two cores); its scores are not expected to reach the marks.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import evojax_cma as ec
from evojax_cma.tasks import DigitsMLP, GymnaxControl, check_task, task_objective

from common import write

# Settings start from EvoJAX's and evosax's examples of OpenAI-ES on these problems
# (population ~100-250, sigma ~0.05-0.1, Adam with lr ~0.01-0.05, policies started at zero),
# sized to finish within a few minutes each on two CPU cores. Pendulum: a (32, 32) policy
# with sigma 0.05 and lr 0.02 ended at -732 after 1000 generations; a (16,) policy with
# sigma 0.1 and lr 0.05 reached -150 to -194 after 300-400 generations on four seeds.
TASKS = {
    "digits": dict(
        task=dict(kind="digits", hidden=(32,), batch_size=256),
        strategy="open_es",
        popsize=128,
        generations=1500,
        sigma0=0.03,
        learning_rate=0.02,
        x0="init",
        mark=0.90,
        score="held-out accuracy (450 images)",
    ),
    "cartpole": dict(
        task=dict(kind="control", env_name="CartPole-v1", hidden=(16,), n_repeats=4),
        strategy="open_es",
        popsize=64,
        generations=150,
        sigma0=0.1,
        learning_rate=0.05,
        x0="zeros",
        mark=475.0,
        score="mean return over 100 test episodes",
    ),
    "pendulum": dict(
        task=dict(kind="control", env_name="Pendulum-v1", hidden=(16,), n_repeats=4),
        strategy="open_es",
        popsize=128,
        generations=500,
        sigma0=0.1,
        learning_rate=0.05,
        x0="zeros",
        mark=-250.0,
        score="mean return over 100 test episodes",
    ),
}

QUICK = {
    "digits": dict(popsize=32, generations=40, task=dict(batch_size=64)),
    "cartpole": dict(popsize=16, generations=10, task=dict(n_repeats=1)),
    "pendulum": dict(popsize=16, generations=10, task=dict(n_repeats=1)),
}


def build_task(settings: dict):
    settings = dict(settings)
    kind = settings.pop("kind")
    return DigitsMLP(**settings) if kind == "digits" else GymnaxControl(**settings)


def build_strategy(cfg: dict, num_dims: int):
    if cfg["strategy"] == "open_es":
        return ec.open_es(num_dims, cfg["popsize"], learning_rate=cfg["learning_rate"])
    if cfg["strategy"] == "sep_cma_es":
        return ec.sep_cma_es(num_dims, cfg["popsize"])
    raise ValueError(f"unknown strategy {cfg['strategy']!r}")


def run(name: str, cfg: dict, seed: int) -> dict:
    task = build_task(cfg["task"])
    spec = check_task(task)
    key = jax.random.key(seed)
    k_init, k_train, k_test = jax.random.split(key, 3)
    if cfg["x0"] == "zeros":
        x0 = jnp.zeros(spec.size, spec.dtype)
    else:
        x0 = spec.ravel(task.init_params(k_init))
    strategy = build_strategy(cfg, spec.size)
    fn = task_objective(task, spec)
    initial = float(task.score(spec.unravel(x0), k_test))
    t0 = time.perf_counter()
    res = ec.minimize(
        strategy,
        fn,
        k_train,
        x0,
        cfg["sigma0"],
        generations=cfg["generations"],
        keyed=True,
    )
    jax.block_until_ready(res.state.mean)
    wall = time.perf_counter() - t0
    final = float(jax.jit(task.score)(spec.unravel(res.state.mean), k_test))
    passed = final >= cfg["mark"]
    print(
        f"{name:9s} seed {seed}: score {initial:9.3f} -> {final:9.3f} "
        f"(mark {cfg['mark']}: {'PASS' if passed else 'fail'}) in {wall:6.1f} s, "
        f"{cfg['generations']} generations x {cfg['popsize']}, "
        f"stop {ec.stop_reasons(res.stop_flags)}",
        flush=True,
    )
    return dict(
        task=name,
        task_name=task.name,
        seed=seed,
        settings={k: v for k, v in cfg.items() if k not in ("mark", "score")},
        num_params=spec.size,
        score_kind=cfg["score"],
        initial_score=initial,
        final_score=final,
        mark=cfg["mark"],
        passed=bool(passed),
        wall_time_s=wall,
        evaluations=int(res.state.evals),
        stop=ec.stop_reasons(res.stop_flags),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--only", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    rows = []
    for name in args.only:
        cfg = dict(TASKS[name])
        if args.quick:
            quick = QUICK[name]
            cfg.update({k: v for k, v in quick.items() if k != "task"})
            cfg["task"] = {**cfg["task"], **quick.get("task", {})}
        for seed in args.seeds:
            rows.append(run(name, cfg, seed))
    suffix = "_quick" if args.quick else ""
    write(f"tasks_passmarks{suffix}_cpu", dict(quick=args.quick, rows=rows))


if __name__ == "__main__":
    main()
