import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _quiet_numpy_warnings_from_oracles():
    # pycma prints through `warnings`; our own code must not warn (filterwarnings=error).
    yield
