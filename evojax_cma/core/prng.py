"""``jax.random``'s threefry streams without the rolled loop XLA:CPU runs them in.

JAX lowers the Threefry-2x32 hash (Salmon et al. 2011, "Parallel random numbers: as easy
as 1, 2, 3", SC'11; 20 rounds in 5 groups of 4) on CPU as a ``fori_loop`` of 5
iterations, to keep compile times down; on GPU and TPU it is unrolled. XLA:CPU runs a
loop iteration as a dozen small kernels (the carried tuple is copied element by element),
so every ``split``, ``fold_in`` and ``normal`` of an ES generation pays about 80 kernel
launches, whatever the size: measured in a jitted scan on this project's 2-core CPU,
``jax.random.normal`` of shape (10, 10) took 5.6 µs rolled against 2.8 µs unrolled,
(17, 100) 38.7 against 6.7 µs, (64, 100) 56 against 19 µs
(``benchmarks/prng_unrolled.py`` measures it in place).

`split`, `fold_in` and `normal` here return exactly what ``jax.random`` returns for the
same key, bit for bit (``tests/test_prng.py`` compares them over keys, shapes, dtypes,
``vmap`` and float64), and keep the key's own type (typed or raw ``uint32`` keys). They
hand ``jax.random`` the key rewrapped in an implementation whose hash is written out
round by round; what turns bits into numbers stays ``jax.random``'s own code. Keys of
another implementation (``rbg``, ``unsafe_rbg``, a user's own), JAX's non-partitionable
threefry mode, and arrays of 2**32 values or more go to ``jax.random`` unchanged.
"""

from __future__ import annotations

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
    """The hash of the flat indices of `shape` as 64-bit counters (high word 0)."""
    lo = lax.iota(np.uint32, math.prod(shape)).reshape(shape)
    return _threefry2x32(key[0], key[1], jnp.zeros(shape, np.uint32), lo)


def _random_bits(key: Array, bit_width: int, shape: tuple[int, ...]) -> Array:
    if math.prod(shape) >= _MAX_COUNT:
        return threefry_prng_impl.random_bits(key, bit_width, shape)
    hi, lo = _hash_iota(key, shape)
    if bit_width == 64:
        return (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)
    bits = hi ^ lo
    return bits if bit_width == 32 else bits.astype(np.dtype(f"uint{bit_width}"))


def _split(key: Array, shape: tuple[int, ...]) -> Array:
    if math.prod(shape) >= _MAX_COUNT:
        return threefry_prng_impl.split(key, shape)
    return jnp.stack(_hash_iota(key, shape), axis=len(shape))


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


def _unrolled(key: Array) -> Array | None:
    """`key` as a key of the unrolled implementation, or None where it would differ."""
    if not jax.config.jax_threefry_partitionable:  # pyright: ignore[reportAttributeAccessIssue]
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        data = jax.random.key_data(key)
    elif str(jax.config.jax_default_prng_impl) == "threefry2x32":  # pyright: ignore[reportAttributeAccessIssue]
        data = key  # a raw uint32 key, of the default implementation
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


def sampling_key(key: Array) -> Array:
    """A key that draws with ``jax.random``'s samplers exactly what `key` draws, faster.

    For samplers other than `normal` (``jax.random.laplace``, ``jax.random.t``, ...):
    ``jax.random.laplace(sampling_key(k), shape)`` equals ``jax.random.laplace(k, shape)``.
    Keys it cannot speed up come back unchanged.
    """
    fast = _unrolled(key)
    return key if fast is None else fast


__all__ = ["fold_in", "normal", "sampling_key", "split"]
