"""``jax.random``'s threefry streams without the rolled loop XLA:CPU runs them in.

JAX lowers the Threefry-2x32 hash (Salmon et al. 2011, "Parallel random numbers: as easy
as 1, 2, 3", SC'11; 20 rounds in 5 groups of 4) on CPU as a ``fori_loop`` of 5
iterations, to keep compile times down; on GPU and TPU it is unrolled. XLA:CPU runs each
iteration as a dozen small kernels (the carried tuple is copied element by element): in a
profiler trace of one 10-D CMA-ES generation, about 80 of its 136 kernels were that loop.
Measured in a jitted scan on this project's 2-core CPU, ``jax.random.normal`` of shape
(10, 10) took 5.1 µs rolled against 2.8 µs unrolled, (17, 100) 35 against 6.8 µs,
(64, 100) 61 against 20 µs (``benchmarks/prng_unrolled.py``).

`split`, `fold_in`, `normal` and `uniform` here return exactly what ``jax.random``
returns for the same key, bit for bit (``tests/test_prng.py`` compares them over keys,
shapes, dtypes, ``vmap`` and float64), and keep the key's own type (typed or raw
``uint32`` keys). They hand ``jax.random`` the key rewrapped in an implementation whose
hash is written out round by round; what turns bits into numbers stays ``jax.random``'s
own code. Everything else goes to ``jax.random`` as it is: keys of another
implementation (``rbg``, ``unsafe_rbg``, a user's own), raw keys when JAX is set to warn
about or refuse them (``jax_legacy_prng_key``) or to type them (``jax_enable_custom_prng``),
and JAX's non-partitionable threefry mode. Arrays of 2**32 values or more are hashed by
JAX's own threefry (the counters here are 32-bit).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.extend.random import define_prng_impl, threefry_prng_impl

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
_MAX_COUNT = 2**32  # the counters below are the low words; larger arrays need both


def _threefry2x32(k1: Array, k2: Array, x1: Any, x2: Any) -> tuple[Array, Array]:
    """The Threefry-2x32 hash of the counter pairs ``(x1, x2)`` under the key ``(k1, k2)``."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x1 = x1 + x2
            x2 = x1 ^ ((x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r)))
        x1 = x1 + ks[(group + 1) % 3]
        x2 = x2 + ks[(group + 2) % 3] + np.uint32(group + 1)
    return x1, x2


def _hash_iota(key: Array, shape: tuple[int, ...]) -> tuple[Array, Array]:
    """The hash of the row-major flat indices of `shape` as 64-bit counters (high word 0).

    The index is a sum of broadcast iotas (as JAX builds its counters), so that a draw
    split over devices along any axis is computed shard by shard.
    """
    lo = jnp.zeros(shape, np.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        lo = lo + lax.broadcasted_iota(np.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    return _threefry2x32(key[0], key[1], jnp.zeros(shape, np.uint32), lo)


# Jitted (inlined when traced) as JAX's own threefry functions are: called eagerly, the
# twenty rounds would otherwise dispatch one operation at a time.
@functools.partial(jax.jit, static_argnums=(1, 2), inline=True)
def _random_bits(key: Array, bit_width: int, shape: tuple[int, ...]) -> Array:
    if math.prod(shape) >= _MAX_COUNT:
        return threefry_prng_impl.random_bits(key, bit_width, shape)
    hi, lo = _hash_iota(key, shape)
    if bit_width == 64:
        return (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)
    bits = hi ^ lo
    return bits if bit_width == 32 else bits.astype(np.dtype(f"uint{bit_width}"))


@functools.partial(jax.jit, static_argnums=1, inline=True)
def _split(key: Array, shape: tuple[int, ...]) -> Array:
    if math.prod(shape) >= _MAX_COUNT:
        return threefry_prng_impl.split(key, shape)
    return jnp.stack(_hash_iota(key, shape), axis=len(shape))


@functools.partial(jax.jit, inline=True)
def _fold_in(key: Array, data: Any) -> Array:
    return jnp.stack(_threefry2x32(key[0], key[1], np.uint32(0), jnp.asarray(data, np.uint32)))


_UNROLLED = define_prng_impl(
    key_shape=(2,),
    seed=threefry_prng_impl.seed,
    split=_split,
    random_bits=_random_bits,
    fold_in=_fold_in,
    name="threefry2x32 (unrolled)",
    tag="fry_unrolled",
)


def _unrolled(key: Any) -> Array | None:
    """`key` as a key of the unrolled implementation, or None where ``jax.random`` decides."""
    config: Any = jax.config
    if not config.jax_threefry_partitionable or config.jax_enable_custom_prng:
        return None
    if not isinstance(key, jax.Array | np.ndarray):
        return None  # jax.random's own error for a list, an int, ...
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        data = jax.random.key_data(key)
    elif (
        key.dtype == np.uint32
        and key.shape[-1:] == (2,)
        and config.jax_legacy_prng_key == "allow"
        and str(config.jax_default_prng_impl) == "threefry2x32"
    ):
        data = jnp.asarray(key)  # a raw key of the default implementation, taken silently
    else:
        return None
    return jax.random.wrap_key_data(data, impl=_UNROLLED)


def _like(keys: Array, key: Array) -> Array:
    """`keys` (of the unrolled implementation) in the type of `key`."""
    data = jax.random.key_data(keys)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
    return data


def split(key: Array, num: int | tuple[int, ...] = 2) -> Array:
    """``jax.random.split(key, num)``, bit for bit, in the type of `key`."""
    fast = _unrolled(key)
    if fast is None:
        return jax.random.split(key, num)
    return _like(jax.random.split(fast, num), key)


def fold_in(key: Array, data: Any) -> Array:
    """``jax.random.fold_in(key, data)``, bit for bit, in the type of `key`."""
    fast = _unrolled(key)
    if fast is None:
        return jax.random.fold_in(key, data)
    return _like(jax.random.fold_in(fast, data), key)


def normal(key: Array, shape: tuple[int, ...] = (), dtype: Any = float) -> Array:
    """``jax.random.normal(key, shape, dtype)``, bit for bit."""
    return jax.random.normal(sampling_key(key), shape, dtype)


def uniform(
    key: Array,
    shape: tuple[int, ...] = (),
    dtype: Any = float,
    minval: Any = 0.0,
    maxval: Any = 1.0,
) -> Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, bit for bit."""
    return jax.random.uniform(sampling_key(key), shape, dtype, minval, maxval)


def sampling_key(key: Array) -> Array:
    """A key that draws with ``jax.random``'s samplers exactly what `key` draws, faster.

    For samplers without a function here (``jax.random.laplace``, ``jax.random.t``,
    ``jax.random.choice``, ...): ``jax.random.laplace(sampling_key(k), shape)`` equals
    ``jax.random.laplace(k, shape)``. The key returned has an implementation of this
    module's own: use it to draw, never store or return it (a checkpoint could not restore
    it; `split` and `fold_in` give keys of `key`'s type). Keys it cannot speed up come back
    unchanged.
    """
    fast = _unrolled(key)
    return key if fast is None else fast


__all__ = ["fold_in", "normal", "sampling_key", "split", "uniform"]
