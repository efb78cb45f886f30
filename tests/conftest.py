import gc

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    One pytest process compiles thousands of XLA programs; each keeps memory maps of its
    machine code, and past the kernel's vm.max_map_count (65530 here) XLA's CPU compiler
    crashes (a segfault inside backend_compile, seen late in full runs). Clearing the
    caches between modules keeps the count bounded; within a module caches still work
    (the no-recompilation tests count traces within one module).
    """
    yield
    jax.clear_caches()
    gc.collect()
