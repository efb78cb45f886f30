"""Every Python block of the README runs as written, in order, in one namespace.

A block may use the names an earlier block defined (as a reader who runs them one after
the other would); nothing is patched or shortened: the README's examples are sized so
that this runs in the CI subset.
"""

import pathlib
import re

import jax
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The contents of the ```python fences, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(python_blocks(README.read_text())) >= 2


def test_readme_blocks_run_as_written(capsys):
    namespace: dict = {"__name__": "__readme__"}
    # a user's session: NumPy-style broadcasting allowed (the suite raises on it elsewhere)
    with jax.numpy_rank_promotion("allow"):
        _run_blocks(namespace)


def _run_blocks(namespace: dict) -> None:
    for i, block in enumerate(python_blocks(README.read_text())):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # name the block in the failure
            pytest.fail(f"README python block {i + 1} failed: {type(exc).__name__}: {exc}")
