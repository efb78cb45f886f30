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


def _decompose(C: Array, D_old: Array) -> tuple[Array, Array, Array]:
    """Symmetrise C and return ``(C, B, D)`` with ascending ``D`` (axis lengths).

    If an eigenvalue is not positive, ``min(D_old)**2`` is added to the diagonal, as pycma
    does after a failed decomposition; adding a multiple of the identity shifts the
    eigenvalues and keeps the eigenvectors, so no second decomposition is needed.
    """
    C = 0.5 * (C + jnp.swapaxes(C, -1, -2))
    eigvals, B = jnp.linalg.eigh(C)
    shift = jnp.where(jnp.min(eigvals, axis=-1) <= 0, jnp.min(D_old, axis=-1) ** 2, 0.0)
    eye = jnp.eye(C.shape[-1], dtype=C.dtype)
    C = C + shift[..., None, None] * jnp.broadcast_to(eye, C.shape)
    eigvals = jnp.maximum(eigvals + shift[..., None], jnp.finfo(C.dtype).tiny)
    return C, B, jnp.sqrt(eigvals)


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
