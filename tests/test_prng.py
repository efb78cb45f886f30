"""`evojax_cma.core.prng` draws exactly what ``jax.random`` draws, faster on CPU.

The reference is ``jax.random`` itself: every comparison is bitwise.
"""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evojax_cma.core import prng

SHAPES = [(), (1,), (3,), (10, 10), (7, 13), (2, 3, 5), (0, 4)]


def keys():
    return [jax.random.fold_in(jax.random.key(s), 7) for s in range(6)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
def test_normal_is_jax_random_normal(shape, dtype):
    for k in keys():
        want = jax.random.normal(k, shape, dtype)
        got = jax.jit(lambda k: prng.normal(k, shape, dtype))(k)  # noqa: B023
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        assert got.dtype == want.dtype


@pytest.mark.parametrize("num", [2, 5, (2, 3)])
def test_split_and_fold_in_are_jax_random(num):
    for i, k in enumerate(keys()):
        a, b = jax.random.split(k, num), prng.split(k, num)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
        for data in (0, i * 1000 + 3, 2**32 - 1):
            a, b = jax.random.fold_in(k, data), prng.fold_in(k, data)
            np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))


def test_other_samplers_through_sampling_key():
    for k in keys():
        fast = prng.sampling_key(k)
        for draw in (
            lambda k: jax.random.uniform(k, (4, 3)),
            lambda k: jax.random.laplace(k, (4, 3)),
            lambda k: jax.random.t(k, 5.0, (4, 3)),
            lambda k: jax.random.bits(k, (6,), jnp.uint8),
            lambda k: jax.random.randint(k, (6,), 0, 100),
        ):
            np.testing.assert_array_equal(np.asarray(draw(fast)), np.asarray(draw(k)))


def test_raw_keys_stay_raw():
    raw = jax.random.PRNGKey(3)
    got = prng.split(raw, 3)
    assert got.dtype == jnp.uint32 and got.shape == (3, 2)
    np.testing.assert_array_equal(got, jax.random.split(raw, 3))
    np.testing.assert_array_equal(prng.fold_in(raw, 9), jax.random.fold_in(raw, 9))
    np.testing.assert_array_equal(prng.normal(raw, (5,)), jax.random.normal(raw, (5,)))


def test_vmapped_keys():
    ks = jax.random.split(jax.random.key(1), 6)
    want = jax.vmap(lambda k: jax.random.normal(k, (5, 4)))(ks)
    got = jax.jit(jax.vmap(lambda k: prng.normal(k, (5, 4))))(ks)
    np.testing.assert_array_equal(got, want)
    want = jax.vmap(lambda k: jax.random.split(k, 3))(ks)
    got = jax.vmap(lambda k: prng.split(k, 3))(ks)
    np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(want))


def test_other_implementations_pass_through():
    k = jax.random.key(0, impl="rbg")
    assert prng.sampling_key(k) is k
    np.testing.assert_array_equal(prng.normal(k, (3, 2)), jax.random.normal(k, (3, 2)))
    s = prng.split(k, 2)
    assert str(jax.random.key_impl(s)) == "rbg"


def test_no_rolled_loop_on_cpu():
    """The point of the module: no while loop in the compiled sampler (jax.random has one)."""

    def hlo(fn):
        return jax.jit(fn).lower(jax.random.key(0)).compile().as_text()

    if jax.default_backend() == "cpu":
        assert "while" in hlo(lambda k: jax.random.normal(k, (10, 10)))
    assert "while" not in hlo(lambda k: prng.normal(k, (10, 10)))
    assert "while" not in hlo(lambda k: jax.random.key_data(prng.split(k, 4)))


def test_float64_and_legacy_mode_in_subprocesses():
    """x64 draws (64-bit bits) match; with ``jax_threefry_partitionable`` off, it defers."""
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        from evojax_cma.core import prng
        k = jax.random.key(3)
        np.testing.assert_array_equal(
            prng.normal(k, (9, 7), jnp.float64), jax.random.normal(k, (9, 7), jnp.float64))
        jax.config.update("jax_threefry_partitionable", False)
        assert prng.sampling_key(k) is k
        np.testing.assert_array_equal(prng.normal(k, (9, 7)), jax.random.normal(k, (9, 7)))
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
