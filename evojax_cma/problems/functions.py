"""Test functions of Hansen's testing procedure (as in pycma's ``cma.ff``), in JAX.

Each takes one point ``x`` of shape ``(n,)`` and returns a scalar; ``jax.vmap`` evaluates a
population. All have their minimum 0 at the origin except `rosenbrock` (at ones) and
`linear` (unbounded below).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from evojax_cma.core import prng


def sphere(x: Array) -> Array:
    """Sum of squares."""
    return jnp.sum(x**2)


def _axis_scales(n: int, dtype) -> Array:
    return jnp.arange(n, dtype=dtype) / max(n - 1, 1)


def ellipsoid(x: Array, cond: float = 1e6) -> Array:
    """``sum cond**(i/(n-1)) x_i**2`` (pycma's ``elli``)."""
    return jnp.sum(cond ** _axis_scales(x.shape[0], x.dtype) * x**2)


def cigar(x: Array, cond: float = 1e6) -> Array:
    """``x_0**2 + cond * sum_{i>0} x_i**2``."""
    return x[0] ** 2 + cond * jnp.sum(x[1:] ** 2)


def tablet(x: Array, cond: float = 1e6) -> Array:
    """``cond * x_0**2 + sum_{i>0} x_i**2``."""
    return cond * x[0] ** 2 + jnp.sum(x[1:] ** 2)


def rosenbrock(x: Array) -> Array:
    """``sum 100 (x_i**2 - x_{i+1})**2 + (x_i - 1)**2``; minimum 0 at ones."""
    return jnp.sum(100.0 * (x[:-1] ** 2 - x[1:]) ** 2 + (x[:-1] - 1.0) ** 2)


def diffpow(x: Array) -> Array:
    """Sum of different powers, ``sum |x_i|**(2 + 10 i/(n-1))``."""
    return jnp.sum(jnp.abs(x) ** (2.0 + 10.0 * _axis_scales(x.shape[0], x.dtype)))


def linear(x: Array) -> Array:
    """``-x_0``: unbounded below; CMA-ES must keep increasing the step size."""
    return -x[0]


def rastrigin(x: Array) -> Array:
    """``10 n + sum x_i**2 - 10 cos(2 pi x_i)``."""
    return 10.0 * x.shape[0] + jnp.sum(x**2 - 10.0 * jnp.cos(2.0 * jnp.pi * x))


def schwefel(x: Array) -> Array:
    """Schwefel's multimodal function on [-500, 500]^n, as pycma's ``ff.schwefelmult``.

    ``418.9829 n - 1.27275661e-5 n - sum x_i sin(sqrt|x_i|)`` plus ``1e4 (|x_i| - 500)^2``
    outside the domain; the optimum ``x_i = 420.9687`` lies far from the next best local
    optima (weak global structure), f there is about ``-1e-9 n``.
    """
    n = x.shape[0]
    penalty = 1e4 * jnp.sum(jnp.where(jnp.abs(x) > 500, (jnp.abs(x) - 500) ** 2, 0.0))
    value = 418.9829 * n - 1.27275661e-5 * n - jnp.sum(x * jnp.sin(jnp.sqrt(jnp.abs(x))))
    return value + penalty


def griewank(x: Array) -> Array:
    """Griewank's function scaled to [-5, 5]^n, as pycma's ``ff.griewank`` (optimum 0 at 0)."""
    y = (600.0 / 5.0) * x
    i = jnp.arange(1, x.shape[0] + 1, dtype=x.dtype)
    return 1.0 - jnp.prod(jnp.cos(y / jnp.sqrt(i))) + jnp.sum(y**2) / 4e3


HANSEN_SUITE = {
    "sphere": sphere,
    "ellipsoid": ellipsoid,
    "cigar": cigar,
    "tablet": tablet,
    "rosenbrock": rosenbrock,
    "diffpow": diffpow,
}
"""The functions of Hansen's testing procedure, in his order."""


def random_rotation(key: Array, num_dims: int, dtype=None) -> Array:
    """A Haar-random orthogonal ``(n, n)`` matrix (QR of a Gaussian matrix, signs fixed)."""
    a = prng.normal(key, (num_dims, num_dims), dtype or jnp.result_type(float))
    q, r = jnp.linalg.qr(a)
    return q * jnp.sign(jnp.diag(r))[None, :]


def rotated(fn, rotation: Array):
    """``x -> fn(R x)``: a non-separable version of `fn` with the same minimum value.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from evojax_cma.problems import ellipsoid, random_rotation, rotated
      >>> f = rotated(ellipsoid, random_rotation(jax.random.key(0), 5))
      >>> float(f(jnp.zeros(5)))
      0.0
    """

    def rotated_fn(x: Array) -> Array:
        return fn(rotation.astype(x.dtype) @ x)

    rotated_fn.__name__ = f"rotated_{getattr(fn, '__name__', 'fn')}"
    return rotated_fn
