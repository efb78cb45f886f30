"""A strategy of this library as an EvoJAX solver, trained by EvoJAX's own Trainer."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma import checkpoint
from evojax_cma.evojax_solver import evojax_solver

evojax = pytest.importorskip("evojax", reason="EvoJAX is an optional test dependency")


def test_the_solver_is_an_nealgorithm_and_negates_fitness():
    from evojax.algo.base import NEAlgorithm

    es = ec.cma_es(4)
    solver = evojax_solver(es, x0=jnp.ones(4), sigma0=0.5, seed=1)
    assert isinstance(solver, NEAlgorithm) and solver.pop_size == es.popsize
    for _ in range(60):  # EvoJAX maximises: reward = -sphere
        x = solver.ask()
        solver.tell(-jnp.sum(x**2, axis=1))
    assert float(jnp.sum(solver.best_params**2)) < 1e-4
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        solver.ask()
        solver.tell(jnp.zeros(3))


def test_save_and_load_state_resume_exactly(tmp_path):
    es = ec.open_es(6, 10)
    a = evojax_solver(es, sigma0=0.3, seed=2)
    for _ in range(5):
        x = a.ask()
        a.tell(-jnp.sum((x - 1.0) ** 2, axis=1))
    path = checkpoint.save(tmp_path / "solver.npz", a.save_state())
    b = evojax_solver(es, sigma0=0.3, seed=9)
    b.load_state(checkpoint.load(path, like=b.save_state()))
    for _ in range(5):
        xa, xb = a.ask(), b.ask()
        np.testing.assert_array_equal(xa, xb)
        a.tell(-jnp.sum((xa - 1.0) ** 2, axis=1))
        b.tell(-jnp.sum((xb - 1.0) ** 2, axis=1))
    np.testing.assert_array_equal(a.best_params, b.best_params)


def test_evojax_trainer_on_cartpole_swingup(tmp_path):
    from evojax.policy import MLPPolicy
    from evojax.task.cartpole import CartPoleSwingUp
    from evojax.trainer import Trainer

    logger = logging.getLogger("evojax_cma.test")
    logger.setLevel(logging.WARNING)
    policy = MLPPolicy(input_dim=5, hidden_dims=[32, 32], output_dim=1, logger=logger)
    solver = evojax_solver(
        ec.open_es(policy.num_params, 64, learning_rate=0.05), sigma0=0.1, seed=0
    )
    test_task = CartPoleSwingUp(max_steps=500, test=True)
    trainer = Trainer(
        policy,
        solver,
        CartPoleSwingUp(max_steps=500),
        test_task,
        max_iter=40,
        log_interval=20,
        test_interval=20,
        n_evaluations=16,
        seed=0,
        logger=logger,
        log_dir=str(tmp_path),
    )
    untrained, _ = trainer.sim_mgr.eval_params(params=jnp.zeros(policy.num_params), test=True)
    score = trainer.run()
    assert score > float(jnp.mean(untrained)) + 30.0, (score, float(jnp.mean(untrained)))
    assert jax.tree.leaves(solver.save_state())
