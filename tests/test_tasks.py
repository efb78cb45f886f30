"""evojax_cma.tasks: the task interface, the digits and gymnax tasks, short training runs.

Small settings throughout (short episodes, narrow networks, 15 generations) so that the file
runs in well under a minute on two cores. scikit-learn and gymnax are optional: the tests
that need them skip with the reason when they are missing.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.pytree import on_pytree, param_spec
from evojax_cma.tasks import (
    ENV_NAMES,
    DigitsMLP,
    GymnaxControl,
    check_task,
    mlp_apply,
    mlp_init,
    task_objective,
)

SKLEARN = "scikit-learn (the 'tasks' extra) provides the digits data set"
GYMNAX = "gymnax (the 'tasks' extra) provides the control environments"


def digits(**kw):
    pytest.importorskip("sklearn", reason=SKLEARN)
    return DigitsMLP(**{"hidden": (8,), "batch_size": 32, **kw})


def control(env_name, **kw):
    pytest.importorskip("gymnax", reason=GYMNAX)
    return GymnaxControl(env_name, **{"hidden": (8,), "max_steps": 40, "n_repeats": 2, **kw})


TASKS = {
    "digits_ce": lambda: digits(),
    "digits_zero_one": lambda: digits(objective="zero_one"),
    "cartpole": lambda: control("CartPole-v1"),
    "pendulum": lambda: control("Pendulum-v1"),
    "acrobot": lambda: control("Acrobot-v1"),
    "mountain_car_continuous": lambda: control("MountainCarContinuous-v0"),
}


@pytest.mark.parametrize("which", sorted(TASKS))
def test_loss_is_a_deterministic_scalar_jitted_and_vmapped(which):
    task = TASKS[which]()
    key = jax.random.key(0)
    spec = check_task(task)
    assert spec == param_spec(task.init_params(key))
    x = spec.ravel(task.init_params(key))
    # Three members: rows 0 and 1 are the same point with the same key, row 2 another key.
    X = jnp.stack([x, x, x + 0.3])
    keys = jax.random.split(jax.random.key(1), 2)
    keys = jnp.concatenate([keys[:1], keys])  # [k0, k0, k1]
    fn = jax.jit(jax.vmap(on_pytree(task.loss, spec)))
    F = fn(X, keys)
    assert F.shape == (3,)
    assert bool(jnp.all(jnp.isfinite(F)))
    assert F[0] == F[1]  # same point, same key, same value
    np.testing.assert_array_equal(F, fn(X, keys))  # and again
    if which in ("digits_ce", "cartpole"):  # one more compilation: only where cheap
        one = jax.jit(on_pytree(task.loss, spec))(X[2], keys[2])
        assert one.shape == ()
        np.testing.assert_allclose(one, F[2], rtol=1e-5)  # vmapped member = single call
    s = task.score(spec.unravel(x), jax.random.key(2))
    assert s.shape == () and bool(jnp.isfinite(s))
    assert isinstance(task.name, str) and task.higher_is_better is True


def test_equal_settings_equal_tasks_and_one_compilation():
    task = digits()
    twin = DigitsMLP(hidden=[8], batch_size=32)  # a list is stored as a tuple
    assert task == twin and hash(task) == hash(twin) and task is not twin
    assert task != digits(batch_size=16)
    spec = check_task(task)
    assert task_objective(task, spec) == task_objective(twin, spec)
    assert hash(task_objective(task, spec)) == hash(task_objective(twin, spec))

    traces = []

    @jax.jit(static_argnums=0)
    def run(f, x, k):
        traces.append(f)  # runs once per compilation
        return f(x, k)

    x = spec.ravel(task.init_params(jax.random.key(0)))
    a = run(task_objective(task, spec), x, jax.random.key(1))
    b = run(task_objective(twin, spec), x, jax.random.key(1))
    assert a == b
    assert len(traces) == 1


def test_digits_split_is_fixed_and_scaled():
    task = digits()
    x_train, y_train, x_test, y_test = task.data()
    assert x_train.shape == (1348, 64) and x_test.shape == (449, 64)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))
    again = DigitsMLP(hidden=(4,), batch_size=32).data()  # same split settings
    np.testing.assert_array_equal(y_test, again[3])
    other = DigitsMLP(split_seed=1).data()
    assert not np.array_equal(y_test, other[3])


def test_zero_one_loss_has_no_gradient_and_counts_errors():
    task = digits(objective="zero_one", batch_size=40)
    params = task.init_params(jax.random.key(0))
    value = task.loss(params, jax.random.key(1))
    assert 0.0 <= float(value) <= 1.0
    assert float(value) * 40 == pytest.approx(round(float(value) * 40))
    grads = jax.grad(task.loss)(params, jax.random.key(1))
    assert all(bool(jnp.all(g == 0)) for g in jax.tree_util.tree_leaves(grads))
    ce = digits(batch_size=40)
    assert jax.tree_util.tree_leaves(jax.grad(ce.loss)(params, jax.random.key(1)))[0].any()


def test_full_batch_loss_ignores_the_key():
    task = digits(batch_size=None)
    params = task.init_params(jax.random.key(0))
    assert task.loss(params, jax.random.key(1)) == task.loss(params, jax.random.key(2))


def test_actions_discrete_in_range_and_continuous_in_bounds():
    cartpole = control("CartPole-v1")
    assert cartpole.discrete and cartpole.action_size == 2 and cartpole.obs_size == 4
    pendulum = control("Pendulum-v1")
    assert not pendulum.discrete and pendulum.action_size == 1
    params = jax.tree.map(lambda a: 50.0 * a, pendulum.init_params(jax.random.key(0)))
    obs = jax.random.normal(jax.random.key(1), (64, 3), jnp.float32) * 5
    actions = jax.vmap(pendulum.act, in_axes=(None, 0))(params, obs)
    assert actions.shape == (64, 1)
    assert float(actions.min()) >= -2.0 and float(actions.max()) <= 2.0
    a = cartpole.act(cartpole.init_params(jax.random.key(0)), jnp.zeros(4))
    assert a.shape == () and a.dtype == jnp.int32 and int(a) in (0, 1)


def test_cartpole_return_counts_steps_until_the_first_done():
    task = control("CartPole-v1", max_steps=30)
    # A policy that always pushes left falls within about ten steps; return = steps survived.
    zeros = jax.tree.map(jnp.zeros_like, task.init_params(jax.random.key(0)))
    r = float(task.episode_return(zeros, jax.random.key(3)))
    assert 5 <= r < 30 and r == int(r)
    # a longer limit does not change a return that ended before the shorter one
    assert float(control("CartPole-v1", max_steps=60).episode_return(zeros, jax.random.key(3))) == r


def _train(task, strategy_fn, seeds, sigma0, x0_zero):
    spec = check_task(task)
    objective = task_objective(task, spec)

    def one(key):
        k_init, k_run = jax.random.split(key)
        x0 = spec.ravel(task.init_params(k_init))
        x0 = jnp.zeros_like(x0) if x0_zero else x0
        es = strategy_fn(spec.size)
        res = ec.minimize(es, objective, k_run, x0, sigma0, generations=15, keyed=True)
        return x0, res.state.mean, res.state.generation

    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    return spec, jax.vmap(one)(keys)


def test_open_es_improves_digits_cross_entropy_over_three_seeds():
    task = digits(hidden=(16,), batch_size=64)
    spec, (x0, mean, generations) = _train(
        task, lambda n: ec.open_es(n, 40, learning_rate=0.05), [0, 1, 2], 0.05, False
    )
    assert np.all(np.asarray(generations) == 15)
    full = DigitsMLP(hidden=(16,), batch_size=None)  # same split: whole-training-set loss
    before = jax.vmap(lambda x: full.loss(spec.unravel(x), jax.random.key(0)))(x0)
    after = jax.vmap(lambda x: full.loss(spec.unravel(x), jax.random.key(0)))(mean)
    # Stated margin: at least 0.2 nats lower cross entropy on the whole training split
    # (initial ~2.4) after 15 generations of 40, for every seed (seeds 0-5 gained 0.30-0.59).
    assert np.all(np.asarray(before - after) > 0.2), (before, after)


def test_open_es_improves_cartpole_return_over_three_seeds():
    task = control("CartPole-v1", max_steps=200, n_repeats=2, n_test_episodes=20)
    spec, (x0, mean, _) = _train(
        task, lambda n: ec.open_es(n, 40, learning_rate=0.05), [0, 1, 2], 0.1, True
    )
    score = jax.vmap(lambda x: task.score(spec.unravel(x), jax.random.key(99)))
    before, after = score(x0), score(mean)
    # The zero policy always pushes left (~9 steps). Stated margin: every seed's mean
    # return over 20 test episodes gains at least 30 steps after 15 generations of 40
    # (seeds 0-5 gained 61-172).
    assert np.all(np.asarray(after - before) >= 30), (before, after)


@dataclasses.dataclass(frozen=True)
class _Quadratic:
    name: str = "quadratic"
    higher_is_better: bool = False
    out_shape: tuple = ()

    def init_params(self, key):
        return {"w": jnp.ones(3, jnp.float32)}

    def loss(self, params, key):
        return jnp.sum(params["w"] ** 2) * jnp.ones(self.out_shape, jnp.float32)

    def score(self, params, key):
        return self.loss(params, key)


def test_check_task_accepts_a_custom_task_and_names_a_wrong_shape():
    assert check_task(_Quadratic()).size == 3
    with pytest.raises(ValueError, match=r"task 'bad_shape' \(_Quadratic\): loss.*shape \(3,\)"):
        check_task(_Quadratic(name="bad_shape", out_shape=(3,)))


def test_check_task_names_other_faults():
    @dataclasses.dataclass  # eq without frozen: unhashable
    class Mutable:
        name: str = "quadratic"
        higher_is_better: bool = False
        init_params = _Quadratic.init_params
        loss = _Quadratic.loss
        score = _Quadratic.score
        out_shape: tuple = ()

    with pytest.raises(TypeError, match="'quadratic' \\(Mutable\\) must be hashable"):
        check_task(Mutable())

    @dataclasses.dataclass(frozen=True)
    class IntParams(_Quadratic):
        def init_params(self, key):
            return {"w": jnp.ones(3, jnp.int32)}

    with pytest.raises(TypeError, match="'quadratic' \\(IntParams\\).*floating"):
        check_task(IntParams())

    @dataclasses.dataclass(frozen=True)
    class NoScore:
        name: str = "no_score"
        higher_is_better: bool = True

        def init_params(self, key):
            return jnp.zeros(2)

        def loss(self, params, key):
            return jnp.sum(params)

    with pytest.raises(TypeError, match=r"task 'no_score' \(NoScore\) needs a callable score"):
        check_task(NoScore())

    with pytest.raises(ValueError, match="method must be"):
        task_objective(_Quadratic(), method="grad")


def test_bad_control_settings_are_value_errors():
    pytest.importorskip("gymnax", reason=GYMNAX)
    with pytest.raises(ValueError, match="n_repeats must be an int >= 1, got 0"):
        GymnaxControl("CartPole-v1", n_repeats=0)
    with pytest.raises(ValueError, match="unknown env_name 'CartPole-v9'.*CartPole-v1"):
        GymnaxControl("CartPole-v9")
    with pytest.raises(ValueError, match="max_steps"):
        GymnaxControl("CartPole-v1", max_steps=-1)
    with pytest.raises(ValueError, match="hidden"):
        GymnaxControl("CartPole-v1", hidden=(8, 0))
    assert set(ENV_NAMES) >= {"CartPole-v1", "Pendulum-v1", "Acrobot-v1"}


def test_bad_digits_settings_are_value_errors():
    pytest.importorskip("sklearn", reason=SKLEARN)
    with pytest.raises(ValueError, match="batch_size"):
        DigitsMLP(batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        DigitsMLP(batch_size=10_000)
    with pytest.raises(ValueError, match="objective"):
        DigitsMLP(objective="hinge")
    with pytest.raises(ValueError, match="test_fraction"):
        DigitsMLP(test_fraction=1.0)
    with pytest.raises(ValueError, match="dtype"):
        DigitsMLP(dtype="int32")


@pytest.mark.parametrize(
    ("module", "build", "package"),
    [
        ("sklearn.datasets", lambda: DigitsMLP(), "scikit-learn"),
        ("gymnax", lambda: GymnaxControl(), "gymnax"),
    ],
)
def test_missing_optional_dependency_names_the_extra(monkeypatch, module, build, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=rf"needs {package}.*evojax_cma\[tasks\]"):
        build()


def test_mlp_layers_and_batch_axes():
    params = mlp_init(jax.random.key(0), (5, 7, 3), jnp.float32)
    assert sorted(params) == ["b0", "b1", "w0", "w1"]
    assert params["w0"].shape == (5, 7) and params["b1"].shape == (3,)
    x = jax.random.normal(jax.random.key(1), (4, 2, 5), jnp.float32)
    out = mlp_apply(params, x)
    assert out.shape == (4, 2, 3)
    np.testing.assert_allclose(out[1, 0], mlp_apply(params, x[1, 0]), rtol=1e-6)
