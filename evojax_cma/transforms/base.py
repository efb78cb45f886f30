r"""What happens between ``ask`` and ``tell``: problem transformations, composed like optax.

A `Transform` is a small, hashable value (a frozen dataclass of Python numbers and
tuples): equal settings compare equal, so a driver that takes it as a static ``jit``
argument never recompiles for a transformation built twice. Each one may

* map genotypes (what the strategy samples) to phenotypes (what the objective sees):
  ``decode``, with ``encode`` for ``x0``;
* keep a small state of its own (``init``), carried through the jitted loop;
* reshape the fitness before ``tell`` (``shape_fitness``, e.g. a penalty) and adapt its
  state after it (``after_tell``).

`chain` composes transformations into a `Pipeline` the way ``optax.chain`` composes
gradient transformations. Points flow *forward* through the chain (``chain(a, b)``
decodes with ``a`` first, then ``b``); fitness values flow *back*, last transformation
first, as values flow back through a stack of layers: in
``chain(encoding, bounds, noise, constraints)`` the augmented Lagrangian penalises the
objective's values first, the noise handler measures those, and the bound penalty is
added last. The instances live beside this module: encodings (`scaling`, `log_scale`),
bounds (`bound_transform`, `bound_penalty`), inequality constraints
(`augmented_lagrangian`) and uncertainty handling (`noise_handler`).

The generation step that runs a pipeline around a strategy is
`evojax_cma.run.step`; every driver (`evojax_cma.minimize`,
`evojax_cma.minimize_restarts`, the chunked path and the host `evojax_cma.fmin`) uses it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax.numpy as jnp
from jax import Array

from evojax_cma.core import types


class Distribution(NamedTuple):
    """What transformations may read of the strategy state the points were sampled from.

    Attributes:
      mean: the mean, a genotype ``(n,)``.
      variances: ``sigma^2 diag(C)``, ``(n,)``.
      weights: the CMA recombination weights ``(rows,)`` (None for other strategies).
      generation: generations completed.
    """

    mean: Array
    variances: Array
    weights: Array | None
    generation: Array


def distribution(strategy: types.Strategy, state: Any) -> Distribution:
    """The `Distribution` of a strategy state, read through ``strategy.summary``."""
    assert strategy.summary is not None, f"strategy {strategy.name!r} declares no summary"
    s = strategy.summary(state)
    stds = jnp.broadcast_to(s.stds, s.mean.shape)
    weights = state.params.weights if types.WEIGHTED in strategy.capabilities else None
    return Distribution(s.mean, (s.sigma * stds) ** 2, weights, state.generation)


class Evaluated(NamedTuple):
    """A generation as one transformation sees it in ``shape_fitness`` and ``after_tell``.

    Attributes:
      genotypes: ``(rows, n)`` as the strategy sampled them.
      inputs: ``(rows, n)`` the points entering this transformation's ``decode``.
      outputs: ``(rows, n)`` the points leaving it.
      f: ``(rows,)`` the objective's values (the median of repeats under noise handling).
      g: ``(rows, m)`` constraint values, or None.
      popsize: the number of leading rows in use (may be traced).
      dist: the `Distribution` the genotypes were sampled from.
    """

    genotypes: Array
    inputs: Array
    outputs: Array
    f: Array
    g: Array | None
    popsize: Any
    dist: Distribution


@dataclasses.dataclass(frozen=True)
class Transform:
    """Base of every transformation: the identity, stateless, with no fitness change.

    Subclasses override what they change. ``requires`` names the strategy capabilities
    (`evojax_cma.core.types`) the transformation reads; ``stateful`` says whether it
    keeps state or changes fitness (the chunked path takes only stateless ones).
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    stateful: ClassVar[bool] = False

    def check(self, num_dims: int) -> None:
        """Raise a `ValueError` if the settings do not fit an ``n``-dimensional problem."""

    def check_dtype(self, dtype: Any) -> None:
        """Raise a `ValueError` if the settings are not representable in the run's `dtype`."""

    def init(self, num_dims: int, rows: int, dtype: Any) -> Any:
        """The state a run starts with (``()`` for none)."""
        del num_dims, rows, dtype
        return ()

    def decode(self, y: Array) -> Array:
        """Points ``(..., n)`` before this transformation to points after it."""
        return y

    def encode(self, x: Array) -> Array:
        """A point ``(n,)`` after this transformation to one before it (for ``x0``)."""
        return x

    def shape_fitness(
        self, state: Any, h: Array, ev: Evaluated, prefix: Pipeline
    ) -> tuple[Array, Any]:
        """The fitness passed on towards ``tell``, and the new state.

        `h` is the fitness as it reaches this transformation (the objective's values
        shaped by the transformations after it in the chain); `prefix` is the chain
        before it.
        """
        del ev, prefix
        return h, state

    def penalize(self, state: Any, f: Array, g: Array | None) -> Array:
        """The fitness change of ``shape_fitness`` for extra evaluations, state unchanged."""
        del state, g
        return f

    def after_tell(self, state: Any, h: Array, ev: Evaluated) -> Any:
        """Adapt the state after ``tell``; `h` is what ``shape_fitness`` returned."""
        del h, ev
        return state

    def stop_defaults(self) -> dict[str, Any]:
        """Termination defaults this transformation changes (pycma's, e.g. ``tolstagnation``)."""
        return {}


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Transformations applied in order (see the module docstring); build with `chain`."""

    transforms: tuple[Transform, ...] = ()

    def check(self, num_dims: int) -> None:
        """Check every transformation against ``n``."""
        for t in self.transforms:
            t.check(num_dims)

    def check_dtype(self, dtype: Any) -> None:
        """Check every transformation against the dtype the run computes in."""
        for t in self.transforms:
            t.check_dtype(dtype)

    def check_strategy(self, strategy: types.Strategy) -> None:
        """Raise a `ValueError` when a transformation needs what the strategy lacks.

        Raises:
          TypeError: a strategy without ``summary`` (every driver reads it).
        """
        if strategy.summary is None:
            raise TypeError(
                f"strategy {strategy.name!r} declares no summary(state); build it with "
                "evojax_cma.core.types.build_strategy"
            )
        for t in self.transforms:
            if not t.requires <= strategy.capabilities:
                raise ValueError(
                    f"{type(t).__name__} needs a CMA-family strategy with weighted "
                    f"recombination (cma_es, sep_cma_es, lm_ma_es: capabilities "
                    f"{sorted(t.requires)}); {strategy.name!r} declares "
                    f"{sorted(strategy.capabilities)}"
                )

    @property
    def stateful(self) -> bool:
        """Whether any transformation keeps state or changes the fitness."""
        return any(t.stateful for t in self.transforms)

    def find(self, kind: type) -> Any:
        """The one transformation of class `kind` in the chain, or None."""
        found = [t for t in self.transforms if isinstance(t, kind)]
        if len(found) > 1:
            raise ValueError(f"a chain takes at most one {kind.__name__}, got {len(found)}")
        return found[0] if found else None

    def init(self, num_dims: int, rows: int, dtype: Any) -> tuple[Any, ...]:
        """The states of all transformations."""
        return tuple(t.init(num_dims, rows, dtype) for t in self.transforms)

    def decode(self, y: Array) -> Array:
        """Genotypes to phenotypes, through every transformation."""
        for t in self.transforms:
            y = t.decode(y)
        return y

    def stages(self, y: Array) -> list[Array]:
        """``[y, t1(y), t2(t1(y)), ...]``: the points before and after each transformation."""
        out = [y]
        for t in self.transforms:
            out.append(t.decode(out[-1]))
        return out

    def encode(self, x: Array) -> Array:
        """A phenotype to a genotype (the encoders in reverse order)."""
        for t in reversed(self.transforms):
            x = t.encode(x)
        return x

    def shape_fitness(
        self, states: tuple[Any, ...], f: Array, ev: Evaluated, stages: list[Array]
    ) -> tuple[Array, tuple[Any, ...], tuple[Array, ...]]:
        """The fitness to tell, the new states, and each transformation's output fitness.

        The fitness flows back through the chain, last transformation first.
        """
        h, new, outs = f, list(states), [f] * len(self.transforms)
        for i in reversed(range(len(self.transforms))):
            local = ev._replace(inputs=stages[i], outputs=stages[i + 1])
            prefix = Pipeline(self.transforms[:i])
            h, new[i] = self.transforms[i].shape_fitness(new[i], h, local, prefix)
            outs[i] = h
        return h, tuple(new), tuple(outs)

    def penalize(self, states: tuple[Any, ...], f: Array, g: Array | None, start: int) -> Array:
        """Apply the fitness changes of the transformations from index `start` on."""
        for i in reversed(range(start, len(self.transforms))):
            f = self.transforms[i].penalize(states[i], f, g)
        return f

    def after_tell(
        self, states: tuple[Any, ...], outs: tuple[Array, ...], ev: Evaluated, stages: list[Array]
    ) -> tuple[Any, ...]:
        """Let every transformation adapt after ``tell``."""
        return tuple(
            t.after_tell(s, h, ev._replace(inputs=stages[i], outputs=stages[i + 1]))
            for i, (t, s, h) in enumerate(zip(self.transforms, states, outs, strict=True))
        )

    def stop_defaults(self, options: dict[str, Any]) -> dict[str, Any]:
        """`options` with the transformations' termination defaults filled in."""
        options = dict(options)
        for t in self.transforms:
            for name, value in t.stop_defaults().items():
                options.setdefault(name, value)
        return options


def chain(*transforms: Transform | Pipeline | None) -> Pipeline:
    """Compose transformations: ``chain(a, b).decode(y) == b.decode(a.decode(y))``.

    Nested chains are flattened and None is skipped, so ``chain(user_encoding, bounds)``
    works whether or not either is given. Equal chains compare (and hash) equal.

    Raises:
      TypeError: an argument that is not a transformation.
    """
    flat: list[Transform] = []
    for t in transforms:
        if t is None:
            continue
        if isinstance(t, Pipeline):
            flat.extend(t.transforms)
        elif isinstance(t, Transform):
            params = type(t).__dict__.get("__dataclass_params__")
            if params is None or not params.frozen:
                raise TypeError(
                    f"{type(t).__name__} must be a frozen dataclass "
                    "(@dataclasses.dataclass(frozen=True)) so that equal settings compare "
                    "equal and different ones do not"
                )
            flat.append(t)
        else:
            raise TypeError(
                "chain takes transformations (evojax_cma.scaling, log_scale, bound_transform, "
                f"...), got {type(t).__name__}"
            )
    return Pipeline(tuple(flat))


__all__ = ["Distribution", "Evaluated", "Pipeline", "Transform", "chain", "distribution"]
