"""Eigendecomposition of covariance matrices, amortised even when runs are vmapped.

CMA-ES refreshes ``C = B diag(D**2) B^T`` only every few generations (pycma's lazy
update). Written as ``lax.cond(need, eigh, keep)``, that saving disappears under
``jax.vmap``: a batched predicate turns the ``cond`` into a ``select`` that runs ``eigh``
for every run in every generation. `refresh_eigensystem` has a custom batching rule
instead: under ``vmap`` it asks once whether *any* run needs a refresh, decomposes the
whole batch only then, and keeps the old factors of the runs that did not ask. The rule
calls the function again, so nested ``vmap`` (runs x hyperparameters) keeps the saving.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array, lax
from jax.custom_batching import custom_vmap

EIGEN_FLOOR = 0.03
"""Relative floor of the eigenvalues: ``D**2 >= EIGEN_FLOOR * eps * max(D**2)``.

``eps`` is the machine epsilon of C's dtype (1.2e-7 in float32, 2.2e-16 in float64). The
axis ratio ``max(D) / min(D)`` is thus at most ``1 / sqrt(EIGEN_FLOOR * eps)``: 1.7e4 in
float32, 3.9e8 in float64 (a condition number of 1.5e17, beyond pycma's
``tolconditioncov`` of 1e14, so float64 runs with that criterion never meet the floor).
"""


def _decompose(C: Array, D_old: Array) -> tuple[Array, Array, Array]:
    """Symmetrise C and return ``(C, B, D)`` with ascending ``D`` (axis lengths).

    The entries of C are rounded at every update and ``eigh`` is backward stable, so an
    eigenvalue is known only to about ``eps * max eigenvalue`` (``eps`` of C's dtype): a
    smaller one is noise and may come out negative, or tiny, for a positive definite C.
    Such eigenvalues are raised to the floor ``EIGEN_FLOOR * eps * max eigenvalue``. That
    bounds the axis ratio, and with it the factor by which whitening (``C^{-1/2} y``, with
    ``y`` rounded to a relative ``eps``) magnifies rounding errors, to
    ``1 / sqrt(EIGEN_FLOOR * eps)``: the step-size path stays a sum of near-standard
    normal vectors. Only the sampling factors ``B, D`` change; C keeps its noise, and the
    following updates, made from steps drawn with the floored ``D``, pull it back. (A
    clamp to ``finfo.tiny`` instead gives axis ratios near 1e19, a step-size path of
    1e12 and an infinite σ within a few generations; shifting C onto the floor at every
    decomposition accumulates the shifts and caps the condition number of C too low.)

    An eigenvalue below ``-n * eps * max eigenvalue`` is no rounding noise: C is not
    positive definite and, as pycma does after a failed decomposition, ``min(D_old)**2`` is
    added to its diagonal. Adding a multiple of the identity shifts the eigenvalues and
    keeps the eigenvectors, so no second decomposition is needed.

    When every computed eigenvalue is at least the floor (a C of condition number below
    ``1 / (EIGEN_FLOOR eps)``, to rounding: 1.5e17 in float64), the result is that of
    ``eigh`` unchanged, as in pycma.
    """
    n = C.shape[-1]
    finfo = jnp.finfo(C.dtype)
    C = 0.5 * (C + jnp.swapaxes(C, -1, -2))
    eigvals, B = jnp.linalg.eigh(C)
    lam_min, lam_max = eigvals[..., 0], jnp.maximum(eigvals[..., -1], 0.0)
    failed = lam_min < -n * finfo.eps * lam_max
    shift = jnp.where(failed | (lam_max <= 0), jnp.min(D_old, axis=-1) ** 2, 0.0)
    eye = jnp.eye(n, dtype=C.dtype)
    C = C + shift[..., None, None] * jnp.broadcast_to(eye, C.shape)
    eigvals = eigvals + shift[..., None]
    floor = jnp.maximum(EIGEN_FLOOR * finfo.eps * eigvals[..., -1:], finfo.tiny)
    return C, B, jnp.sqrt(jnp.maximum(eigvals, floor))


@custom_vmap
def refresh_eigensystem(need: Array, C: Array, B: Array, D: Array) -> tuple[Array, Array, Array]:
    """Return ``(C, B, D)`` refreshed from ``C`` where `need` is true, unchanged elsewhere.

    Args:
      need: boolean, shape ``batch``.
      C: ``batch + (n, n)`` covariance matrices.
      B: ``batch + (n, n)`` current eigenvectors (columns).
      D: ``batch + (n,)`` current square roots of the eigenvalues, ascending.

    Returns:
      ``(C, B, D)``; where refreshed, ``C`` is symmetrised.
    """

    def refresh(operands):
        C, B, D = operands
        C2, B2, D2 = _decompose(C, D)
        if jnp.ndim(need) == 0:  # this branch runs only when `need` holds: no select
            new, old = (C2, B2, D2), (C, B, D)
            return tuple(a.astype(jnp.result_type(a, b)) for a, b in zip(new, old, strict=True))
        m2 = need[..., None, None]
        return jnp.where(m2, C2, C), jnp.where(m2, B2, B), jnp.where(need[..., None], D2, D)

    return lax.cond(jnp.any(need), refresh, lambda operands: operands, (C, B, D))


@refresh_eigensystem.def_vmap
def _refresh_eigensystem_vmap(axis_size, in_batched, need, C, B, D):
    def batched(x, is_batched):
        return x if is_batched else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))

    need, C, B, D = (batched(x, b) for x, b in zip((need, C, B, D), in_batched, strict=True))
    return refresh_eigensystem(need, C, B, D), (True, True, True)


__all__ = ["refresh_eigensystem"]
