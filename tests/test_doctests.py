"""The Examples sections of the package's docstrings run (optax-style doctests)."""

import doctest
import importlib
import pkgutil

import jax
import pytest

import evojax_cma

FINDER = doctest.DocTestFinder(exclude_empty=True)


def _examples(name):
    module = importlib.import_module(name)
    return [t for t in FINDER.find(module, name, module=module) if t.examples]


MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(evojax_cma.__path__, prefix="evojax_cma.")
    if not name.endswith("__main__") and _examples(name)
)


def test_the_package_has_examples():
    assert len(MODULES) >= 5, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    tests = _examples(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with jax.numpy_rank_promotion("allow"):
        for test in tests:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
