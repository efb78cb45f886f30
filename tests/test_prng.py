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


@pytest.mark.parametrize("shape", SHAPES)
def test_uniform_is_jax_random_uniform(shape):
    for k in keys():
        np.testing.assert_array_equal(prng.uniform(k, shape), jax.random.uniform(k, shape))
        lo, hi = jnp.float32(-2.0), jnp.float32(3.0)
        np.testing.assert_array_equal(
            prng.uniform(k, shape, jnp.float32, lo, hi),
            jax.random.uniform(k, shape, jnp.float32, lo, hi),
        )


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


def test_jax_key_policies_are_jax_random_s():
    """Raw keys under ``jax_legacy_prng_key="error"``, and non-keys, fail as in jax.random."""
    raw = jax.random.PRNGKey(0)
    with jax.legacy_prng_key("error"):
        for fn in (prng.split, lambda k: prng.normal(k, (2,)), lambda k: prng.fold_in(k, 1)):
            with pytest.raises(ValueError, match="[Ll]egacy"):
                fn(raw)
    with pytest.raises(TypeError, match="unexpected PRNG key type"):
        prng.split([0, 1])  # type: ignore[arg-type]


def test_hash_functions_are_jitted():
    """Called eagerly (the host loop splits its key every generation), the hash must run as
    one compiled call, as JAX's own threefry functions do, not twenty rounds dispatched
    one operation at a time."""
    for fn in (prng._split, prng._fold_in, prng._random_bits):
        assert hasattr(fn, "lower"), fn


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


def test_sharded_draws_are_hashed_shard_by_shard():
    """On 4 forced host devices, a draw sharded by rows (or by columns) hashes only each
    device's slice: the hash's xor runs on the per-device shape, nothing is gathered, and
    the values equal the unsharded jax.random draw."""
    code = textwrap.dedent(
        """
        import os, re
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from evojax_cma.core import prng
        mesh = Mesh(np.array(jax.devices()), ("d",))
        key = jax.random.key(5)
        for spec, local in ((P("d", None), "u32[4,64]"), (P(None, "d"), "u32[16,16]")):
            place = NamedSharding(mesh, spec)
            draw = lambda k: prng.normal(k, (16, 64))
            fn = jax.jit(lambda k: jax.lax.with_sharding_constraint(draw(k), place))
            hlo = fn.lower(key).compile().as_text()
            xors = set(re.findall(r"(u32\\[[0-9,]*\\])\\{?[0-9,]*\\}? xor\\(", hlo))
            assert xors - {"u32[]"} == {local}, (spec, xors)  # u32[]: the key schedule
            assert "all-gather" not in hlo and "all-to-all" not in hlo, spec
            np.testing.assert_array_equal(np.asarray(fn(key)), jax.random.normal(key, (16, 64)))
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
