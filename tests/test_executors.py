"""Host objectives through executors: a process pool, a Dask cluster, Ray (issue 14 "Machines").

``fmin(..., executor=...)`` evaluates each candidate through ``executor.map``. Every
executor must give the run it gives without one (the same evaluations in the same order,
so bit-identical), and when the objective raises on one candidate or a worker dies, the
`FminError` names the candidate (where the executor knows it) and ``resume=err.resume``
ends as the run that never failed. Failures are triggered at the k-th call, counted in a
file, so that they work in any worker process. A Dask worker that dies runs in a cluster
of worker processes (the threaded cluster's worker would take the test process with it).
Ray's start takes ~10 s: its tests are marked slow. The standard library's process pool
with a raising and a dying worker is in ``tests/test_fmin_errors.py``
(``test_process_pool_failure_resumes_with_a_new_pool``).
"""

import contextlib
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
from test_fmin_errors import POPSIZE, SIGMA0, X0, _same_run
from test_fmin_errors import _sphere as sphere

import evojax_cma as ec
from evojax_cma.run.host_evaluation import evaluate_on_host

OPTS = {"verbose": 0, "maxiter": 12, "seed": 4}


class FailsAt:
    """The sphere, failing at its `k`-th call over all processes (counted in `path`)."""

    def __init__(self, path, k, how="raises"):
        self.path, self.k, self.how = str(path), k, how

    def __call__(self, x):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)
        if os.path.getsize(self.path) == self.k:
            if self.how == "dies":
                np.save(self.path + ".npy", x)  # the point that killed the worker
                os._exit(1)
            raise RuntimeError(f"simulation crashed at {x!r}")
        return sphere(x)


@pytest.fixture(scope="module")
def reference():
    return ec.fmin(sphere, X0, SIGMA0, OPTS)[1]


def _fail_and_resume(executor, reference, tmp_path, how="raises", k=30):
    """Fail at call k (generation 4, candidate 5), check the error, resume, compare."""
    fn = FailsAt(tmp_path / "calls", k, how)
    with pytest.raises(ec.FminError) as info:
        ec.fmin(fn, X0, SIGMA0, OPTS, executor=executor)
    err = info.value
    assert (err.generation, err.run) == (4, 1)
    assert err.result.evals == 3 * POPSIZE and err.result.iterations == 3
    np.testing.assert_array_equal(err.result.history, reference.history[:3])
    _, resumed = ec.fmin(sphere, X0, SIGMA0, OPTS, executor=executor, resume=err.resume)
    _same_run(resumed, reference)
    return err


def test_process_pool_gives_the_same_run(reference):
    ctx = multiprocessing.get_context("spawn")  # no fork of a multithreaded JAX process
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        _, res = ec.fmin(sphere, X0, SIGMA0, OPTS, executor=pool)
    _same_run(res, reference)


@contextlib.contextmanager
def _one_worker_dask(processes: bool, config: dict):
    """A `Client` of a local cluster with one worker of one thread, under a Dask `config`.

    One thread: the failing call is counted in a file, so the k-th call must be the k-th
    candidate (two threads raced on the count and on the order: a flaky test). A random
    dashboard port: another cluster running on this machine cannot make it fail.
    """
    distributed = pytest.importorskip("distributed")
    import dask

    with (
        dask.config.set(config),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=processes, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def dask_client():
    with _one_worker_dask(False, {}) as client:
        yield client


def test_dask_client_gives_the_same_run_and_resumes(dask_client, reference, tmp_path):
    """A Dask ``Client`` is the executor (``fmin`` uses its ``get_executor()``)."""
    _, res = ec.fmin(sphere, X0, SIGMA0, OPTS, executor=dask_client)
    _same_run(res, reference)
    err = _fail_and_resume(dask_client, reference, tmp_path)
    assert err.candidate == 5 and "candidate 5" in str(err)
    assert isinstance(err.__cause__, RuntimeError) and "simulation crashed" in str(err.__cause__)
    assert err.point is not None and repr(err.point) in str(err.__cause__)


def _noisy(x):
    return float(np.random.default_rng().normal())


def test_dask_client_calls_the_objective_for_every_point(dask_client):
    """Equal points and repeats are evaluated again (Dask's ``pure=True`` computed once)."""
    X = np.ones((4, 2))
    values = [evaluate_on_host(_noisy, X, batched=False, executor=dask_client) for _ in range(2)]
    assert len(set(np.concatenate(values).tolist())) == 8


def _within(seconds, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, failing the test if it takes more than `seconds`.

    On a timeout the call is left running (the cluster's teardown ends it).
    """
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(fn, *args, **kwargs).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


@pytest.fixture(scope="module")
def dask_processes():
    """A local Dask cluster whose one worker is a process (it can die), restarted by a nanny.

    ``allowed-failures: 0``: the task that killed its worker fails at once with
    ``KilledWorker`` (by default Dask runs it again on up to 3 restarted workers).
    ``worker-saturation: 1.0``: the scheduler sends the worker one task at a time, so
    only the running task is blamed (with the default 1.1 the next one is also on the
    worker and fails with it; a fast objective's finished task may not be reported yet).
    """
    config = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,
        "distributed.worker.multiprocessing-method": "spawn",
    }
    with _one_worker_dask(True, config) as client:
        yield client


def test_dask_worker_that_dies_names_the_candidate_and_resumes(dask_processes, reference, tmp_path):
    """Issue 14: a Dask worker process exits (``os._exit``) on candidate 5 of generation 4.

    The error names that candidate and its point; the nanny restarts the worker and
    ``resume=err.resume`` through the same client ends as the run that never failed.
    """
    from distributed import KilledWorker

    err = _within(120, _fail_and_resume, dask_processes, reference, tmp_path, "dies")
    assert err.candidate == 5 and "a worker died while evaluating" in str(err)
    assert "candidate 5" in str(err) and "generation 4 of run 1" in str(err)
    assert isinstance(err.__cause__, KilledWorker)
    np.testing.assert_array_equal(err.point, np.load(tmp_path / "calls.npy"))


def test_executor_of_the_wrong_type_is_named():
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        ec.fmin(sphere, X0, SIGMA0, OPTS, executor=object())


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    here = os.path.dirname(os.path.abspath(__file__))  # workers import this module's functions
    with warnings.catch_warnings():
        # ray.init forks a helper process; after the module's earlier tests have started
        # JAX, JAX warns at every fork (an error under filterwarnings = error).
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        ray.init(
            num_cpus=1,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": here}},
        )
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raises", "dies"])
def test_ray_executor_names_the_failing_candidate_and_resumes(ray_local, how, reference, tmp_path):
    """Ray tasks through `ec.RayExecutor`; a dead worker's task is not retried."""
    executor = ec.RayExecutor()
    _, res = ec.fmin(sphere, X0, SIGMA0, OPTS, executor=executor)
    _same_run(res, reference)
    err = _fail_and_resume(executor, reference, tmp_path, how)
    assert err.candidate == 5 and "candidate 5" in str(err)
    kind = ray_local.exceptions.WorkerCrashedError if how == "dies" else RuntimeError
    assert isinstance(err.__cause__, kind)
    if how == "raises":
        assert err.point is not None and repr(err.point) in str(err.__cause__)
