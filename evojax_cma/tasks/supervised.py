"""Supervised tasks: an MLP classifier of scikit-learn's bundled 8x8 digits.

The data (1797 images of 64 pixels with values 0..16, ten classes; the UCI "Optical
Recognition of Handwritten Digits" test set, E. Alpaydin and C. Kaynak, 1998, shipped with
scikit-learn as ``sklearn.datasets.load_digits``) is read from the scikit-learn install, so
nothing is downloaded. Pixels are scaled to [0, 1]. The train/test split is a fixed
permutation from ``numpy.random.default_rng(split_seed)``, the same on every machine.

The arrays live in a module-level cache keyed by the split settings, never in the task's
fields: a task stays a small hashable value, and two tasks with the same settings compare
equal.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from evojax_cma.core import prng
from evojax_cma.tasks.base import check_dtype, check_hidden, mlp_apply, mlp_init, require

OBJECTIVES = ("cross_entropy", "zero_one")
"""The training losses of `DigitsMLP`: differentiable, and the 0-1 error (no gradient)."""

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class DigitsMLP:
    """An MLP classifier of the 8x8 digits; loss on a minibatch drawn from the key.

    Attributes:
      hidden: hidden layer widths (tanh), e.g. ``(32,)``.
      batch_size: minibatch size of `loss`, drawn without replacement from the training
        split with the key; None: the whole training split (the key is then unused).
      objective: ``"cross_entropy"`` (mean softmax cross entropy) or ``"zero_one"`` (the
        fraction misclassified: piecewise constant, so backprop gets a zero gradient and
        only a search method can train on it).
      test_fraction: share of the 1797 images held out for `score`, in (0, 1).
      split_seed: seed of the fixed train/test permutation.
      dtype: floating dtype of the parameters and of the computation.
    """

    hidden: tuple[int, ...] = (32,)
    batch_size: int | None = 128
    objective: str = "cross_entropy"
    test_fraction: float = 0.25
    split_seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        require("sklearn.datasets", "DigitsMLP")
        object.__setattr__(self, "hidden", check_hidden(self.hidden))
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        fraction = float(self.test_fraction)
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        object.__setattr__(self, "test_fraction", fraction)
        if not isinstance(self.split_seed, int | np.integer) or self.split_seed < 0:
            raise ValueError(f"split_seed must be an int >= 0, got {self.split_seed!r}")
        n_train = len(self.data()[1])
        if self.batch_size is not None:
            if (
                not isinstance(self.batch_size, int | np.integer)
                or isinstance(self.batch_size, bool)
                or not 1 <= self.batch_size <= n_train
            ):
                raise ValueError(
                    f"batch_size must be an int in [1, {n_train}] (the training split) or "
                    f"None, got {self.batch_size!r}"
                )
            object.__setattr__(self, "batch_size", int(self.batch_size))

    @property
    def name(self) -> str:
        """``"digits_mlp"``, or ``"digits_mlp_zero_one"`` for the 0-1 objective."""
        return "digits_mlp" if self.objective == "cross_entropy" else "digits_mlp_zero_one"

    @property
    def higher_is_better(self) -> bool:
        """True: the score is an accuracy."""
        return True

    def data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_train, y_train, x_test, y_test)`` as NumPy arrays (float32 pixels in [0, 1])."""
        return _digits_split(self.test_fraction, int(self.split_seed))

    def init_params(self, key: Array) -> dict[str, Array]:
        """LeCun-normal MLP weights ``64 -> hidden -> 10`` (see `mlp_init`)."""
        return mlp_init(key, (64, *self.hidden, NUM_CLASSES), self.dtype)

    def logits(self, params: dict[str, Array], x: Array) -> Array:
        """Class scores ``(..., 10)`` of images ``(..., 64)``."""
        return mlp_apply(params, x)

    def loss(self, params: dict[str, Array], key: Array) -> Array:
        """The objective (`objective`) on a minibatch of the training split drawn from `key`."""
        x_train, y_train, _, _ = self.data()
        x, y = jnp.asarray(x_train, self.dtype), jnp.asarray(y_train)
        if self.batch_size is not None and self.batch_size < len(y_train):
            key = prng.sampling_key(key)
            rows = jax.random.choice(key, len(y_train), (self.batch_size,), replace=False)
            x, y = x[rows], y[rows]
        logits = self.logits(params, x)
        if self.objective == "zero_one":
            return jnp.mean((jnp.argmax(logits, axis=-1) != y).astype(self.dtype))
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    def score(self, params: dict[str, Array], key: Array | None = None) -> Array:
        """Accuracy on the held-out split (deterministic: `key` is unused)."""
        del key
        _, _, x_test, y_test = self.data()
        predicted = jnp.argmax(self.logits(params, jnp.asarray(x_test, self.dtype)), axis=-1)
        return jnp.mean((predicted == jnp.asarray(y_test)).astype(self.dtype))


@functools.lru_cache(maxsize=8)
def _digits_split(
    test_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    datasets: Any = require("sklearn.datasets", "DigitsMLP")
    digits = datasets.load_digits()
    x = np.asarray(digits.data, np.float32) / np.float32(16.0)
    y = np.asarray(digits.target, np.int32)
    order = np.random.default_rng(split_seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    if not 0 < n_test < len(y):
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split")
    test, train = order[:n_test], order[n_test:]
    arrays = (x[train], y[train], x[test], y[test])
    for a in arrays:
        a.setflags(write=False)
    return arrays
