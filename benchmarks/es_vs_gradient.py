"""Evolution strategies versus backprop on one network, and ES on CartPole against evosax.

1. Digits (`evojax_cma.tasks.DigitsMLP`, minibatch cross entropy): the same MLP, the same
   initial weights and the same minibatch size, trained by ``open_es``, ``variational``,
   ``sep_cma_es`` and ``lm_ma_es`` (each one ``evojax_cma.minimize`` call with
   ``generations=`` and ``history=``: the history keeps the mean every ``every``
   generations) and by optax Adam on backprop gradients (a ``lax.scan``). Curves of the
   held-out accuracy and the full-training-set loss of the mean (Adam: the weights)
   against generations or steps, against forward-pass equivalents and against wall time,
   over several seeds. An ES generation costs ``popsize`` forward passes (one minibatch
   each); a backprop step costs ``fwd_per_grad`` of them, *measured* here: a jitted
   ``value_and_grad`` of the minibatch loss against a jitted forward of the same loss on
   the same minibatch, timed in alternation. Wall time is that of the compiled run
   (compilation excluded), spread evenly over its generations.
2. CartPole-v1 (`evojax_cma.tasks.GymnaxControl`): the library's strategies and evosax's
   OpenES, SNES, Sep-CMA-ES and CMA-ES on the SAME rollout code (the task's loss on flat
   vectors, one key per member), the same population, generations and sigma0, several
   seeds; the mean of each run is scored every ``every`` generations on the same held-out
   test episodes. Then the time per generation (rollouts + update) of ours against
   evosax's with the same policy and population, timed in alternation in one run.

Writes ``results/es_vs_gradient_cpu.json`` (``..._quick_cpu.json`` with ``--quick``) and PNG
figures under ``results/figures/``. Usage::

    python benchmarks/es_vs_gradient.py [--quick] [--only digits cartpole]

``--quick`` is a smoke test (tiny settings, ~2-3 minutes on two cores, mostly compilation):
its curves are short. (One script of ~470 lines: settings, both parts and their figures, so
that the notebook ``notebooks/es_vs_gradient.ipynb`` imports them from one place.)
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import evojax_cma as ec
from evojax_cma.tasks import DigitsMLP, GymnaxControl, check_task, task_objective

from common import RESULTS, interleaved_times, write

FIGURES = RESULTS / "figures"

OURS = ("open_es", "variational", "sep_cma_es", "lm_ma_es")
CONTROL_OURS = (*OURS, "cma_es")
EVOSAX = ("Open_ES", "SNES", "Sep_CMA_ES", "CMA_ES")
TIMING_PAIRS = (("open_es", "Open_ES"), ("sep_cma_es", "Sep_CMA_ES"), ("cma_es", "CMA_ES"))

# Digits: OpenAI-ES settings from benchmarks/tasks_passmarks.py (>= 0.90 held-out accuracy
# after ~1500 generations of 128); the other strategies get the same population and sigma0.
DIGITS = dict(
    hidden=(32,),
    batch_size=128,
    popsize=128,
    generations=600,
    every=20,
    sigma0=0.03,
    learning_rate=0.02,
    adam_learning_rate=3e-3,
    adam_steps=600,
    seeds=(0, 1, 2),
    methods=(*OURS, "adam"),
)
CARTPOLE = dict(
    hidden=(16,),
    n_repeats=2,
    popsize=64,
    generations=100,
    every=10,
    sigma0=0.1,
    learning_rate=0.05,
    n_test_episodes=100,
    seeds=(0, 1, 2),
    timing_generations=20,
    timing_rounds=7,
    methods=(*CONTROL_OURS, *EVOSAX),
    timing_pairs=TIMING_PAIRS,
)
QUICK = dict(
    digits=dict(
        hidden=(16,),
        batch_size=64,
        popsize=16,
        generations=40,
        every=10,
        adam_steps=40,
        seeds=(0, 1),
    ),
    cartpole=dict(
        popsize=16,
        generations=10,
        every=5,
        n_repeats=1,
        n_test_episodes=10,
        seeds=(0, 1),
        timing_generations=10,
        timing_rounds=7,
    ),
)


def settings(kind: str, quick: bool = False, **overrides) -> dict:
    """The settings of a part (``"digits"`` or ``"cartpole"``): tiny with `quick`, then
    `overrides` (e.g. ``methods=("open_es", "adam")``, ``timing_pairs=()``)."""
    unknown = set(overrides) - set(DIGITS if kind == "digits" else CARTPOLE)
    if kind not in QUICK or unknown:
        raise ValueError(f"unknown part {kind!r} or settings {sorted(unknown)}")
    base = dict(DIGITS if kind == "digits" else CARTPOLE)
    return {**base, **(QUICK[kind] if quick else {}), **overrides}


def strategy(name: str, n: int, cfg: dict) -> ec.Strategy:
    """One of the library's strategies at the part's population and learning rate."""
    lr, pop = cfg["learning_rate"], cfg["popsize"]
    if name == "open_es":
        return ec.open_es(n, pop, learning_rate=lr)
    if name == "variational":
        return ec.variational(n, pop, learning_rate=lr)
    return {"sep_cma_es": ec.sep_cma_es, "lm_ma_es": ec.lm_ma_es, "cma_es": ec.cma_es}[name](n, pop)


def es_runner(es: ec.Strategy, task, spec, cfg: dict, record: bool = True):
    """A jitted ``(key, x0) -> (K, n)`` means every ``every`` generations (or the mean)."""
    gens, every = cfg["generations"], cfg["every"]
    fn = task_objective(task, spec)
    history = dict(capacity=gens // every, stride=every, coordinates=spec.size)

    def run(key, x0):
        res = ec.minimize(
            es,
            fn,
            key,
            x0,
            cfg["sigma0"],
            keyed=True,
            generations=gens,
            history=history if record else None,
        )
        return res.history.mean if record else res.state.mean

    return jax.jit(run)


def adam_runner(task, spec, cfg: dict):
    """A jitted ``(key, x0) -> (K, n)`` weights every ``every`` steps of Adam on backprop."""
    opt = optax.adam(cfg["adam_learning_rate"])
    grad = jax.grad(task.loss)
    every = cfg["every"]

    def run(key, x0):
        params = spec.unravel(x0)

        def step(carry, k):
            p, s = carry
            updates, s = opt.update(grad(p, k), s, p)
            return (optax.apply_updates(p, updates), s), None

        def block(carry, k):
            carry, _ = jax.lax.scan(step, carry, jax.random.split(k, every))
            return carry, spec.ravel(carry[0])

        keys = jax.random.split(key, cfg["adam_steps"] // every)
        return jax.lax.scan(block, (params, opt.init(params)), keys)[1]

    return jax.jit(run)


def timed(compiled, *args):
    """``(outputs, seconds)`` of a compiled function (``jit(f).lower(...).compile()``)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, time.perf_counter() - t0


def forward_per_grad(task, params, rounds: int = 7, calls: int = 200) -> dict:
    """Measured cost of a backprop step in forward passes: `calls` minibatch losses against
    their ``value_and_grad`` on the same minibatches (drawing them left out), each side one
    compiled ``lax.scan`` (no dispatch overhead), timed in alternation."""
    x_train, y_train, _, _ = task.data()
    rows = np.arange(calls * task.batch_size).reshape(calls, -1) % len(y_train)
    batches = (jnp.asarray(x_train[rows]), jnp.asarray(y_train[rows]))

    def batch_loss(p, x, y):  # DigitsMLP.loss on a given minibatch
        return optax.softmax_cross_entropy_with_integer_labels(task.logits(p, x), y).mean()

    def total(f, zero):
        def body(acc, xy):
            return jax.tree.map(jnp.add, acc, f(params, *xy)), None

        return jax.jit(lambda: jax.lax.scan(body, zero, batches)[0])

    forward = total(batch_loss, jnp.zeros(()))
    backward = total(jax.value_and_grad(batch_loss), (jnp.zeros(()), params))
    t = interleaved_times(
        {
            "forward": lambda: jax.block_until_ready(forward()),
            "grad": lambda: jax.block_until_ready(backward()),
        },
        rounds,
    )
    return dict(
        forward_s=t["forward"] / calls,
        value_and_grad_s=t["grad"] / calls,
        fwd_per_grad=t["grad"] / t["forward"],
    )


def digits(cfg: dict) -> dict:
    """Part 1: the ES and Adam curves on the digits MLP (see the module docstring)."""
    task = DigitsMLP(hidden=tuple(cfg["hidden"]), batch_size=cfg["batch_size"])
    spec = check_task(task)
    full = dataclasses.replace(task, batch_size=None)  # the whole training split
    params0 = task.init_params(jax.random.key(0))
    cost = forward_per_grad(task, params0)
    print(f"digits: n = {spec.size}, a backprop step costs {cost['fwd_per_grad']:.2f} forwards")

    @jax.jit
    def curve(means):  # (K, n) -> held-out accuracy and full-training loss of each
        ps = jax.vmap(spec.unravel)(means)
        key = jax.random.key(0)
        return jax.vmap(task.score)(ps), jax.vmap(full.loss, in_axes=(0, None))(ps, key)

    methods = {}
    for name in cfg["methods"]:
        if name == "adam":
            run = adam_runner(task, spec, cfg)
        else:
            run = es_runner(strategy(name, spec.size, cfg), task, spec, cfg)
        adam = name == "adam"
        steps = cfg["adam_steps"] if adam else cfg["generations"]
        per_step = cost["fwd_per_grad"] if adam else cfg["popsize"]
        rows, compiled = [], run.lower(jax.random.key(0), spec.ravel(params0)).compile()
        for seed in cfg["seeds"]:
            k_init, k_run = jax.random.split(jax.random.key(seed))
            x0 = spec.ravel(task.init_params(k_init))
            means, wall = timed(compiled, k_run, x0)
            acc, loss = curve(jnp.concatenate([x0[None], means]))
            rows.append(dict(seed=seed, wall_s=wall, accuracy=acc.tolist(), loss=loss.tolist()))
        x = np.arange(0, steps + 1, cfg["every"])
        methods[name] = dict(
            steps=x.tolist(),
            forward_passes=(x * per_step).tolist(),
            wall_s=[(x / steps * r["wall_s"]).tolist() for r in rows],
            runs=rows,
        )
        final = [r["accuracy"][-1] for r in rows]
        print(
            f"  {name:12s} held-out accuracy {np.median(final):.3f} (seeds {np.round(final, 3)}),"
            f" {np.median([r['wall_s'] for r in rows]):.2f} s per run",
            flush=True,
        )
    return dict(settings=cfg, num_params=spec.size, cost=cost, methods=methods)


def evosax_runner(name: str, n: int, task, spec, cfg: dict, record: bool = True):
    """evosax's strategy on the same flat objective: ``(key, x0) -> (K, n)`` means or mean."""
    from evosax import algorithms

    pop, sigma0 = cfg["popsize"], cfg["sigma0"]
    x0_like = jnp.zeros(n, spec.dtype)
    if name == "Open_ES":
        es = algorithms.Open_ES(
            pop,
            x0_like,
            optimizer=optax.adam(cfg["learning_rate"]),
            std_schedule=optax.constant_schedule(sigma0),
        )
        params = es.default_params
    else:
        es = getattr(algorithms, name)(pop, x0_like)
        params = es.default_params.replace(std_init=sigma0)
    fn = task_objective(task, spec)
    gens, every = cfg["generations"], cfg["every"]

    def generation(state, k):
        k_ask, k_eval, k_tell = jax.random.split(k, 3)
        x, state = es.ask(k_ask, state, params)
        f = jax.vmap(fn)(x, jax.random.split(k_eval, pop))
        return es.tell(k_tell, x, f, state, params)[0], None

    def block(state, k):
        state, _ = jax.lax.scan(generation, state, jax.random.split(k, every))
        return state, state.mean

    def run(key, x0):
        k_init, k_run = jax.random.split(key)
        state = es.init(k_init, x0, params)
        if not record:
            return jax.lax.scan(generation, state, jax.random.split(k_run, gens))[0].mean
        return jax.lax.scan(block, state, jax.random.split(k_run, gens // every))[1]

    return jax.jit(run)


def cartpole(cfg: dict) -> dict:
    """Part 2: CartPole-v1 curves of ours and evosax's, and the time per generation."""
    task = GymnaxControl(
        "CartPole-v1",
        hidden=tuple(cfg["hidden"]),
        n_repeats=cfg["n_repeats"],
        n_test_episodes=cfg["n_test_episodes"],
    )
    spec = check_task(task)
    n = spec.size
    x0 = jnp.zeros(n, spec.dtype)
    test_key = jax.random.key(10**6)  # test episodes that training never draws
    curve = jax.jit(jax.vmap(lambda m: task.score(spec.unravel(m), test_key)))
    methods = {}
    for name in cfg["methods"]:
        if name in EVOSAX:
            run = evosax_runner(name, n, task, spec, cfg)
        else:
            run = es_runner(strategy(name, n, cfg), task, spec, cfg)
        rows, compiled = [], run.lower(jax.random.key(0), x0).compile()
        for seed in cfg["seeds"]:
            means, wall = timed(compiled, jax.random.key(seed), x0)
            ret = curve(jnp.concatenate([x0[None], means]))
            rows.append(dict(seed=seed, wall_s=wall, test_return=ret.tolist()))
        final = [r["test_return"][-1] for r in rows]
        methods[name] = dict(
            library="evosax" if name in EVOSAX else "evojax_cma",
            generations=np.arange(0, cfg["generations"] + 1, cfg["every"]).tolist(),
            runs=rows,
        )
        print(
            f"  {name:12s} test return of the mean {np.median(final):7.1f} "
            f"(seeds {np.round(final, 1)})",
            flush=True,
        )
    # time per generation, rollouts + update, same policy and population, interleaved
    timing_cfg = {**cfg, "generations": cfg["timing_generations"]}
    pairs = cfg["timing_pairs"]
    calls, names = {}, [name for pair in pairs for name in pair]
    for name in names:
        if name in EVOSAX:
            run = evosax_runner(name, n, task, spec, timing_cfg, record=False)
        else:
            run = es_runner(strategy(name, n, timing_cfg), task, spec, timing_cfg, record=False)
        compiled = run.lower(jax.random.key(0), x0).compile()
        calls[name] = lambda c=compiled: jax.block_until_ready(c(jax.random.key(0), x0))
    seconds = interleaved_times(calls, cfg["timing_rounds"])
    per_gen = {k: v / cfg["timing_generations"] for k, v in seconds.items()}
    ratios = {f"{a}/{b}": per_gen[a] / per_gen[b] for a, b in pairs}
    for a, b in pairs:
        print(
            f"  time per generation {a} {per_gen[a] * 1e3:.2f} ms, {b} {per_gen[b] * 1e3:.2f} ms"
            f" (ratio {ratios[f'{a}/{b}']:.2f})"
        )
    return dict(
        settings=cfg,
        num_params=n,
        methods=methods,
        time_per_generation_s=per_gen,
        time_ratio_ours_over_evosax=ratios,
    )


def _band(ax, x, ys, label, start: int = 0, linestyle: str = "-"):
    """Median line and min-max band over seeds, from point `start` on."""
    x, ys = np.asarray(x, float)[start:], np.asarray(ys, float)[:, start:]
    drawn = ax.plot(x, np.median(ys, axis=0), label=label, linestyle=linestyle)[0]
    ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), color=drawn.get_color(), alpha=0.2)


def _figure(size):
    """A matplotlib Figure on the Agg canvas (no pyplot, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, title: str, path):
    """Title, layout, and a PNG at `path` if given."""
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig


def plot_digits(result: dict, path=None):
    """Accuracy and loss against steps, forward-pass equivalents and wall time (a Figure)."""
    from matplotlib.ticker import NullFormatter

    fig = _figure((13, 7))
    axes = fig.subplots(2, 3)
    for name, m in result["methods"].items():
        for row, metric in enumerate(("accuracy", "loss")):
            ys = [r[metric] for r in m["runs"]]
            _band(axes[row, 0], m["steps"], ys, name)
            # log x axes: from the first recorded point on (generation 0 is at x = 0)
            _band(axes[row, 1], m["forward_passes"], ys, name, start=1)
            _band(axes[row, 2], np.median(m["wall_s"], axis=0), ys, name, start=1)
    cost = result["cost"]["fwd_per_grad"]
    xlabels = (
        "generation (ES) / step (Adam)",
        f"forward passes (backprop step = {cost:.2f})",
        "wall time [s] (compiled run)",
    )
    for j, xlabel in enumerate(xlabels):
        axes[1, j].set_xlabel(xlabel)
        axes[0, j].set_ylim(0, 1)
        if j:
            for i in range(2):
                axes[i, j].set_xscale("log")
                axes[i, j].xaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].set_ylabel("held-out accuracy")
    axes[1, 0].set_ylabel("training cross entropy")
    axes[0, 0].legend(fontsize=8)
    s = result["settings"]
    title = (
        f"digits MLP {s['hidden']} ({result['num_params']} weights), batch {s['batch_size']}, "
        f"ES popsize {s['popsize']}; median and range over {len(s['seeds'])} seeds"
    )
    return _finish(fig, title, path)


def plot_cartpole(result: dict, path=None):
    """Test return of the mean against generations, and the time per generation (a Figure)."""
    fig = _figure((12, 4.5))
    ax, bars = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=(2, 1)))
    for name, m in result["methods"].items():
        style = "--" if m["library"] == "evosax" else "-"
        label = f"{name} ({m['library']})"
        _band(ax, m["generations"], [r["test_return"] for r in m["runs"]], label, linestyle=style)
    ax.set_xlabel("generation")
    ax.set_ylabel("test return of the mean")
    ax.legend(fontsize=7)
    per_gen = result["time_per_generation_s"]
    colors = ["tab:gray" if name in EVOSAX else "tab:blue" for name in per_gen]
    bars.barh(list(per_gen), [1e3 * v for v in per_gen.values()], color=colors)
    bars.set_xlabel("ms per generation (grey: evosax)")
    s = result["settings"]
    title = (
        f"CartPole-v1, policy {s['hidden']} ({result['num_params']} weights), popsize "
        f"{s['popsize']}, {s['n_repeats']} episode(s) per member; {len(s['seeds'])} seeds"
    )
    return _finish(fig, title, path)


def main() -> None:
    """Run the parts asked for and write the JSON and the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument(
        "--only", nargs="+", choices=("digits", "cartpole"), default=["digits", "cartpole"]
    )
    args = parser.parse_args()
    suffix = "_quick" if args.quick else ""
    FIGURES.mkdir(parents=True, exist_ok=True)
    out = dict(quick=args.quick)
    t0 = time.perf_counter()
    for kind in args.only:
        part, plot = (digits, plot_digits) if kind == "digits" else (cartpole, plot_cartpole)
        print(f"{kind}:", flush=True)
        out[kind] = part(settings(kind, args.quick))
        plot(out[kind], FIGURES / f"es_vs_gradient_{kind}{suffix}.png")
    out["total_wall_s"] = time.perf_counter() - t0
    write(f"es_vs_gradient{suffix}_cpu", out)


if __name__ == "__main__":
    main()
