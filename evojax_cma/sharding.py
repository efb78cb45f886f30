"""Many devices and machines: the population or the runs of a sweep laid out over devices.

Two layouts, both with JAX's own sharding (``jax.sharding.Mesh`` and ``NamedSharding``;
no ``pmap``), so the same code runs on CPU host devices, GPUs, TPUs and, under
``jax.distributed.initialize``, on the devices of several machines:

- **The population** (`population_sharding`, ``minimize(..., sharding=...)``): every
  generation's evaluated points and their values are constrained to lie split by rows
  over a one-axis mesh (`evojax_cma.run.step.on_devices`), so each device samples its
  rows (random bits are partitionable: ``jax_threefry_partitionable``, on by default,
  draws the same numbers whatever the layout) and evaluates them. CMA-ES's ``tell``
  weights the rows where they lie instead of permuting the population, so only the λ
  fitness values, n-vectors (the weighted mean, the best point) and the n x n rank-μ sum
  cross devices (tested on the compiled program). A population (with ``chunked=True``: a
  chunk) that the device count does not divide is refused: padding would change λ and so
  the strategy. Mirrored noise (`evojax_cma.open_es`'s default) moves nothing either:
  the pairs ``ε, -ε`` lie on neighbouring rows, so each device draws its rows' ε and
  mirrors them itself (tested on the compiled program; with ``[ε; -ε]``, the layout of
  earlier builds, XLA gathered ε for the devices holding -ε). A pair is split only when
  a device holds an odd number of rows. The chunked tell regenerates each chunk's noise
  on every device (compute, no communication).
- **The runs of a sweep** (`shard_runs`): the leading (vmapped) axis of the inputs is split
  over the devices with ``jax.device_put``; ``jax.jit(jax.vmap(run))`` then runs each
  device's runs there. The runs only meet in the batched loop's "is any run still going".

Results equal the single-device run with the same keys to rounding (reductions split over
devices add in another order; ``tests/test_sharding.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from evojax_cma.run.step import Problem


@dataclasses.dataclass(frozen=True)
class PopulationSharding:
    """Rows of a population split over the devices of a one-axis mesh (a hashable value).

    Build it with `population_sharding`. Equal meshes and axis names compare equal, so a
    second call of a driver with an equal sharding reuses the compiled code.

    Attributes:
      mesh: a ``jax.sharding.Mesh`` with one axis.
      axis: that axis' name.
    """

    mesh: Mesh
    axis: str = "pop"

    @property
    def size(self) -> int:
        """The number of devices the rows are split over."""
        return int(self.mesh.shape[self.axis])

    def split(self, ndim: int) -> NamedSharding:
        """The sharding that splits an array of `ndim` dimensions along its first axis."""
        return NamedSharding(self.mesh, PartitionSpec(self.axis, *([None] * (ndim - 1))))

    def replicated(self) -> NamedSharding:
        """The sharding that keeps a whole copy on every device."""
        return NamedSharding(self.mesh, PartitionSpec())

    def rows(self, x: Any) -> Any:
        """`x` constrained to lie split by rows (inside ``jit``); replicated if not divisible.

        Only the population and its fitness are split; a few rows that the device count
        does not divide (the noise handler's re-evaluations) are evaluated on every device.
        """
        x = jax.numpy.asarray(x)
        if x.ndim == 0 or x.shape[0] % self.size:
            return jax.lax.with_sharding_constraint(x, self.replicated())
        return jax.lax.with_sharding_constraint(x, self.split(x.ndim))

    def check_rows(self, rows: int, what: str = "popsize") -> None:
        """Refuse a population (or chunk) that the device count does not divide.

        Raises:
          ValueError: naming `what`, the sizes and what to do instead.
        """
        if rows % self.size:
            raise ValueError(
                f"{what}={rows} is not divisible by the {self.size} devices of the sharding; "
                f"choose a {what} that is a multiple of {self.size} (padding would change "
                "the population size and so the strategy), or shard over fewer devices"
            )


def population_sharding(
    devices: Sequence[Any] | int | None = None, axis: str = "pop"
) -> PopulationSharding:
    """Split populations over `devices` (default: all devices, of every process).

    Args:
      devices: a sequence of ``jax.Device`` (e.g. ``jax.devices()[:4]``), a number of
        devices (the first ones of ``jax.devices()``), or None for all of them. Under
        ``jax.distributed.initialize``, ``jax.devices()`` lists every process' devices.
      axis: the mesh axis' name.

    Returns:
      A `PopulationSharding` for ``minimize(..., sharding=...)`` and `shard_runs`.

    Raises:
      TypeError: `devices` or `axis` of the wrong type.
      ValueError: an empty device list or a count beyond the available devices.

    Examples:
      >>> import jax, evojax_cma as ec
      >>> ec.population_sharding(1).size
      1
    """
    if not isinstance(axis, str) or not axis:
        raise TypeError(f"axis must be a non-empty str, got {axis!r}")
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices must be between 1 and the {len(available)} available devices, "
                f"got {devices}"
            )
        chosen = list(available[:devices])
    elif isinstance(devices, Sequence) and not isinstance(devices, str):
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices must not be empty")
        if not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError("devices must be jax.Device objects (e.g. jax.devices()[:4])")
    else:
        raise TypeError(
            f"devices must be None, an int or a sequence of jax.Device, got {devices!r}"
        )
    return PopulationSharding(Mesh(np.array(chosen), (axis,)), axis)


def shard_problem(problem: Problem, sharding: PopulationSharding | None, rows: int) -> Problem:
    """`problem` with its population (of `rows` rows per evaluation) split over `sharding`.

    The generation step then constrains the evaluated points and their values to lie split
    by rows (`evojax_cma.run.step.on_devices`). None: the problem unchanged.

    Raises:
      TypeError: a `sharding` that is not a `PopulationSharding`.
      ValueError: `rows` not divisible by the device count.
    """
    if sharding is None:
        return problem
    if not isinstance(sharding, PopulationSharding):
        raise TypeError(
            "sharding must be built by evojax_cma.population_sharding(...), got "
            f"{type(sharding).__name__}"
        )
    sharding.check_rows(rows)
    return problem._replace(sharding=sharding)


def replicate(sharding: PopulationSharding | None, tree: Any) -> Any:
    """`tree`'s arrays copied to every device of `sharding` (None: `tree` unchanged).

    Under ``jax.distributed`` this makes a process' own inputs (the same on every process)
    global arrays, as a jitted program over the devices of all processes needs them.
    """
    if sharding is None:
        return tree
    target = sharding.replicated()
    if target.is_fully_addressable:
        return jax.device_put(tree, target)
    return jax.tree_util.tree_map(lambda leaf: _global_copy(leaf, target), tree)


def _global_copy(leaf: Any, target: NamedSharding) -> Any:
    """A process-local value as a global array with a copy on every device of `target`."""
    leaf = jax.numpy.asarray(leaf)
    if jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _global_copy(jax.random.key_data(leaf), target)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    values = np.asarray(leaf)
    return jax.make_array_from_callback(values.shape, target, lambda index: values[index])


def shard_runs(tree: Any, sharding: PopulationSharding | None = None) -> Any:
    """Split the leading (runs) axis of every array in `tree` over the devices.

    Pass the result to ``jax.jit(jax.vmap(run))``: each device runs its share of the runs.

    Args:
      tree: the vmapped inputs of a sweep (keys, x0s, params, ...), each with the same
        leading length, a multiple of the device count.
      sharding: a `PopulationSharding` (default: all devices).

    Returns:
      `tree` with every leaf a ``jax.Array`` split along its first axis.

    Raises:
      ValueError: leaves without a leading axis, of different leading lengths, or a length
        that the device count does not divide.

    Examples:
      >>> import jax, evojax_cma as ec
      >>> keys = ec.shard_runs(jax.random.split(jax.random.key(0), 4), ec.population_sharding(1))
      >>> keys.shape
      (4,)
    """
    sharding = population_sharding() if sharding is None else sharding
    leaves = jax.tree_util.tree_leaves(tree)
    lengths = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if not leaves or -1 in lengths or len(lengths) != 1:
        raise ValueError(
            "shard_runs needs arrays with one common leading (runs) axis, got leading "
            f"lengths {sorted(lengths)} (-1: a scalar)"
        )
    sharding.check_rows(lengths.pop(), "number of runs")
    return jax.tree_util.tree_map(
        lambda leaf: jax.device_put(leaf, sharding.split(np.ndim(leaf))), tree
    )


__all__ = [
    "PopulationSharding",
    "population_sharding",
    "replicate",
    "shard_problem",
    "shard_runs",
]
