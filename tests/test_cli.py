"""The command line (`evojax_cma.cli`): ``python -m evojax_cma`` in a subprocess.

Each subprocess pays Python and JAX start-up and compiles fmin's pieces (a few seconds),
so the runs are few and small; argument errors and the failing-function case run
in-process through ``cli.main``.
"""

import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys

import cma
import numpy as np
import pytest

from evojax_cma import cli
from evojax_cma.history import FIELDS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "evojax_cma", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def found(pattern, text):
    match = re.search(pattern, text, re.M | re.S)
    assert match is not None, f"{pattern!r} not in {text!r}"
    return match.groups()


def printed(stdout):
    """The summary's numbers: best f, evaluations, iterations, runs, best x."""
    (best_f,) = found(r"^best f: (\S+)$", stdout)
    counts = found(r"^evaluations: (\d+), iterations: (\d+), runs: (\d+)$", stdout)
    evals, iters, runs = map(int, counts)
    (x,) = found(r"^best x: \[(.*?)\]", stdout)
    return float(best_f), evals, iters, runs, np.array(x.split(), float)


def test_named_function_reaches_ftarget_like_pycma_and_writes_history(tmp_path):
    out = tmp_path / "out"
    n, x0, sigma0, ftarget = 4, 0.1, 0.1, 1e-8
    done = run_cli(
        "rosenbrock", "--dim", n, "--x0", x0, "--sigma0", sigma0, "--ftarget", ftarget, "--out", out
    )
    assert done.returncode == 0, done.stderr
    best_f, evals, iters, runs, xbest = printed(done.stdout)
    assert "termination on ftarget=1e-08" in done.stdout
    # pycma on the same problem and settings (its own Rosenbrock, default popsize)
    pycma_options = {"ftarget": ftarget, "seed": 3, "verbose": -9}
    es = cma.fmin2(cma.ff.rosen, n * [x0], sigma0, pycma_options)[1]
    assert es.result.fbest < ftarget and best_f < ftarget
    assert evals < 3 * es.result.evaluations  # same ballpark as pycma (deterministic seeds)
    np.testing.assert_allclose(xbest, np.ones(n), atol=1e-3)  # the optimum, from mathematics
    assert "best_f=" in done.stderr  # the tqdm bar, on by default

    record = json.loads((out / "history.json").read_text())
    assert record["function"] == "rosenbrock" and record["result"]["stop"] == ["ftarget"]
    h = record["history"]
    assert set(FIELDS) <= set(h)
    assert h["generation"][-1] == iters and h["evals"][-1] == evals
    assert h["f_best_so_far"][-1] == pytest.approx(best_f, rel=1e-9)
    assert min(h["f_best_generation"]) == pytest.approx(best_f, rel=1e-9)
    assert np.all(np.diff(h["f_best_so_far"]) <= 0)
    history = cli.load_history(out / "history.npz")
    for name in FIELDS:
        want = np.array(h[name], dtype=float)  # JSON's null is NaN
        np.testing.assert_array_equal(np.asarray(getattr(history, name), float), want)
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_module_function_on_sys_path(tmp_path):
    (tmp_path / "my_objective.py").write_text(
        "import numpy as np\n\n"
        "def shifted(x):\n"
        "    assert isinstance(x, np.ndarray) and x.shape == (3,)\n"
        "    return float(np.sum((x - 2.0) ** 2))\n"
    )
    done = run_cli(
        "my_objective:shifted",
        "--x0",
        "0,0,0",
        "--ftarget",
        "1e-10",
        "--seed",
        "5",
        "--quiet",
        cwd=ROOT,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    best_f, _, _, runs, xbest = printed(done.stdout)
    assert best_f < 1e-10 and runs == 1
    np.testing.assert_allclose(xbest, 2.0, atol=1e-4)
    assert "best_f=" not in done.stderr  # --quiet: no bar


def test_bad_argument_exits_2_naming_it():
    done = run_cli("sphere", "--dim", "3", "--sigma0", "-1")
    assert done.returncode == 2
    assert "--sigma0" in done.stderr and "usage:" in done.stderr


@pytest.mark.parametrize(
    "argv, named",
    [
        (["sphere", "--dim", "3", "--popsize", "1"], "--popsize"),
        (["sphere", "--x0", "1"], "--dim"),
        (["sphere", "--dim", "3", "--x0", "1,2"], "--x0"),
        (["sphere", "--dim", "3", "--x0", "1,x"], "--x0"),
        (["sphere", "--dim", "2", "--strategy", "sep_cma_es", "--restarts", "1"], "--restarts"),
        (["sphere", "--dim", "2", "--strategy", "open_es", "--popsize", "5"], "--popsize"),
        (["sphere", "--dim", "2", "--option", "tolfoo=1"], "--option"),
        (["sphere", "--dim", "2", "--bounds", "0,0,0", "1"], "--bounds"),
        (["sphere", "--dim", "2", "--strategy", "bogus"], "--strategy"),
        (["no_such_benchmark", "--dim", "2"], "function"),
        (["no_such_module_xyz:f", "--dim", "2"], "function"),
        (["json:no_such_function", "--dim", "2"], "function"),
    ],
)
def test_bad_arguments_in_process(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err.splitlines()[-1], err


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--popsize", "--maxfevals", "--ftarget", "--restarts", "--bipop", "--seed"):
        assert option in text
    assert "rosenbrock" in text and "module:function" in text


def test_failing_function_from_a_file_names_the_candidate(tmp_path, capsys):
    path = tmp_path / "objective_file.py"
    path.write_text(
        "import numpy as np\n\n"
        "def fragile(x):\n"
        "    if x[0] > 0.6:\n"
        "        raise RuntimeError('cannot evaluate here')\n"
        "    return float(np.sum(x ** 2))\n"
    )
    status = cli.main([f"{path}:fragile", "--dim", "3", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert "fragile" in err and "cannot evaluate here" in err
    assert re.search(r"candidate \d+ \(x = array\(\[", err)  # row and point named


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["evojax-cma"] == "evojax_cma.cli:main"
    assert callable(cli.main)
    dist = importlib.metadata.distribution("evojax_cma")
    if not dist.entry_points:
        pytest.skip("installed metadata predates [project.scripts]: pip install -e . again")
    (script,) = [e for e in dist.entry_points if e.name == "evojax-cma"]
    assert script.group == "console_scripts" and script.value == "evojax_cma.cli:main"
