"""The notebooks run in a Jupyter kernel (nbclient) at small settings and draw their figures.

Each notebook reads ``EVOJAX_CMA_NOTEBOOK_SMALL=1`` and shrinks its runs; the test executes
every cell in a fresh kernel started in ``notebooks/`` and checks that no cell raised and
that the notebook produced the figures it promises (``image/png`` outputs). The notebooks
in the repository carry their outputs so that a reader sees the plots without running them;
`test_committed_notebooks_carry_their_figures` checks that.
"""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel")

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"

# name -> (figures it must draw, whether it is slow at small settings)
EXPECTED = {
    "quickstart.ipynb": (0, False),
    "neuroevolution.ipynb": (2, False),
    "sweeps.ipynb": (1, True),
    "es_vs_gradient.ipynb": (2, True),
}


def _figures(nb) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def _errors(nb) -> list[str]:
    return [
        f"{out.get('ename')}: {out.get('evalue')}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.slow] if slow else [])
        for n, (_, slow) in EXPECTED.items()
    ],
)
def test_notebook_runs_and_draws_its_figures(name, monkeypatch):
    monkeypatch.setenv("EVOJAX_CMA_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on an error
    assert _errors(nb) == []
    figures, _ = EXPECTED[name]
    assert _figures(nb) >= figures, f"{name} drew {_figures(nb)} figures, expected {figures}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_notebooks_carry_their_figures(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.get("execution_count") for cell in code), "not executed"
    assert _errors(nb) == []
    assert _figures(nb) >= EXPECTED[name][0]
