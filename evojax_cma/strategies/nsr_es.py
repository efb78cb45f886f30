r"""NSR-ES: OpenAI-ES whose utilities blend fitness with novelty against a behaviour archive.

Reference:
  E. Conti, V. Madhavan, F. Petroski Such, J. Lehman, K. O. Stanley, J. Clune. Improving
  Exploration in Evolution Strategies for Deep Reinforcement Learning via a Population of
  Novelty-Seeking Agents. NeurIPS 2018, arXiv:1712.06560. ``[CMS18]`` below.

A behaviour characterisation :math:`b(\theta) \in \mathbb{R}^d` describes what a point
does (a robot's final position, say), and an archive :math:`A` keeps the behaviours of
past means. The novelty of a point is its mean distance to its k nearest neighbours in
the archive ([CMS18] §3.1, the novelty :math:`N(\theta, A)`)

.. math:: N(\theta, A) = \frac{1}{|S|} \sum_{j \in S} \lVert b(\theta) - b_j \rVert_2,
   \qquad S = \mathrm{kNN}(b(\theta), A),

and NSR-ES follows the search gradient of reward and novelty together ([CMS18] §3.2; the
weight w as in NSRA-ES, §3.3):

.. math:: m \leftarrow m - \alpha \frac{1}{\lambda\sigma} \sum_i
   \big(w\,u^f_i + (1 - w)\,u^N_i\big)\,\psi(\varepsilon_i),

with :math:`u^f` the shaped fitness (minimised) and :math:`u^N` the shaped negated
novelty, each rank-normalised separately ([CMS18] §3.2: centred ranks by default). NSR-ES
is :math:`w = 1/2`; :math:`w = 1` is OpenAI-ES and :math:`w = 0` NS-ES (§3.1). After each
update the behaviour of the new mean enters the archive ([CMS18] Alg. 1, "add
:math:`b(\pi_{\theta_{t+1}})` to A"); the initial mean's is its first entry.

Differences from the paper, on purpose:
  - One agent: [CMS18] runs a meta-population of M agents sharing the archive and picks
    the agent to update by novelty (§3.1). ``jax.vmap`` over runs gives M independent
    agents with their own archives.
  - The archive is a fixed-size ring buffer (``archive_size`` rows; the oldest entry is
    overwritten), so the state has a fixed shape under ``jit``/``vmap``; the paper's
    archive grows without bound.
  - The behaviour is a deterministic JAX function of the point, ``behavior(x) -> (d,)``,
    given to the factory, so the strategy keeps the interface of every other strategy
    (``tell(state, population, fitness)``) and runs through `evojax_cma.minimize`
    unchanged, chunked mode included. It is evaluated once per candidate in ``tell`` and
    once for the new mean; where fitness and behaviour come from one costly rollout, the
    rollout runs twice (``jit`` may share it when both are traced together, but that is
    not guaranteed). Pass a module-level function (or another value that compares
    equal): a new lambda per call is a new strategy, and recompiles.

Non-finite behaviours: a candidate with a non-finite behaviour gets NaN novelty, which
ranks last; a mean with a non-finite behaviour is not archived.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from evojax_cma.core import validation
from evojax_cma.core.types import Strategy
from evojax_cma.strategies._score_function import Secondary
from evojax_cma.strategies.open_es import build_open_es, open_es


class NSRESParams(NamedTuple):
    """Numeric hyperparameters of NSR-ES: those of `evojax_cma.OpenESParams` and w.

    Attributes:
      optimizer, weight_decay, sigma_decay, sigma_min: as in `evojax_cma.OpenESParams`.
      fitness_weight: w in [0, 1], the fitness's share of the utilities (NSR-ES: 1/2).
    """

    optimizer: dict[str, Array]
    weight_decay: Array
    sigma_decay: Array
    sigma_min: Array
    fitness_weight: Array


class NoveltyArchive(NamedTuple):
    """A ring buffer of behaviours (in ``GaussianState.opt_state[1]``).

    Attributes:
      behaviors: ``(archive_size, d)``; rows at index ``>= count`` are unused.
      count: how many behaviours were ever added (int32); the next goes to
        ``count % archive_size``.
    """

    behaviors: Array
    count: Array


def archive_add(archive: NoveltyArchive, b: Array) -> NoveltyArchive:
    """`archive` with behaviour `b` ``(d,)`` added (overwriting the oldest when full).

    A non-finite `b` is not added (it would make every later distance NaN).
    """
    size = archive.behaviors.shape[0]
    ok = jnp.all(jnp.isfinite(b))
    row = archive.count % size
    new = archive.behaviors.at[row].set(b.astype(archive.behaviors.dtype))
    return NoveltyArchive(
        behaviors=jnp.where(ok, new, archive.behaviors),
        count=archive.count + ok.astype(archive.count.dtype),
    )


def novelty(archive: NoveltyArchive, behaviors: Array, neighbors: int) -> Array:
    r"""Mean distance of each row of `behaviors` ``(k, d)`` to its nearest archived ones.

    The ``min(neighbors, filled)`` nearest entries count ([CMS18] §3.1); with an empty
    archive the novelty is 0, and a non-finite behaviour gets NaN.
    """
    size = archive.behaviors.shape[0]
    finite = jnp.all(jnp.isfinite(behaviors), axis=1)
    b = jnp.where(finite[:, None], behaviors, 0.0).astype(archive.behaviors.dtype)
    dist = jnp.sqrt(jnp.sum((b[:, None, :] - archive.behaviors[None, :, :]) ** 2, axis=-1))
    filled = jnp.minimum(archive.count, size)
    dist = jnp.where(jnp.arange(size)[None, :] < filled, dist, jnp.inf)
    k = min(neighbors, size)
    nearest = -lax.top_k(-dist, k)[0]
    used = jnp.minimum(filled, k)
    total = jnp.sum(jnp.where(jnp.arange(k)[None, :] < used, nearest, 0.0), axis=1)
    mean_distance = total / jnp.maximum(used, 1).astype(total.dtype)
    return jnp.where(finite, mean_distance, jnp.nan)


NSR_OPTIONS: dict[str, Any] = dict(archive_size=1000, neighbors=10, fitness_weight=0.5)
"""NSR-ES's own keywords and their defaults (`nsr_es` describes them)."""


def nsr_es(
    num_dims: int, popsize: int, behavior: Callable[[Array], Array], **options: Any
) -> Strategy:
    """Build NSR-ES (minimisation) on the common ``init/ask/tell`` interface.

    Args:
      num_dims: dimension n, >= 1.
      popsize: λ, >= 2 (even with antithetic sampling).
      behavior: a deterministic JAX function of one point, ``(n,) -> (d,)`` (or a
        scalar, d = 1): the behaviour characterisation. Checked with ``jax.eval_shape``.
      **options: NSR-ES's own keywords (`NSR_OPTIONS`, defaults in brackets), that is:
        archive_size: rows of the ring buffer of past means' behaviours, >= 1 [1000].
        neighbors: k of the k-nearest-neighbour novelty, >= 1 [10, as in [CMS18]].
        fitness_weight: default w in [0, 1] (`NSRESParams`) [1/2: NSR-ES]; 1 is
          OpenAI-ES, 0 NS-ES.
        and any keyword of `evojax_cma.open_es` (``sigma_decay``, ``sigma_min``,
        ``optimizer``, ``learning_rate``, ``antithetic``, ``shaping``, ``chunk_size``,
        ``perturbation``, ``df``, ``weight_decay``, pycma stop options), with its
        defaults.

    Returns:
      A `Strategy` whose state is a `evojax_cma.GaussianState` with scalar σ and
      ``opt_state = (optax state, NoveltyArchive)``; ``default_params`` takes
      ``fitness_weight=`` besides `evojax_cma.open_es`'s names (traced values allowed).

    Raises:
      TypeError, ValueError: a bad argument, named; a `behavior` that does not map a
        point to a real vector.

    Examples:
      >>> import jax, jax.numpy as jnp, evojax_cma as ec
      >>> es = ec.nsr_es(2, 20, jnp.tanh, archive_size=50, learning_rate=0.05)
      >>> res = ec.minimize(es, lambda x: jnp.sum(x**2), jax.random.key(0), jnp.ones(2),
      ...                   0.1, generations=20)
      >>> int(res.state.opt_state[1].count)  # x0 and one mean per generation
      21
    """
    if not callable(behavior):
        raise TypeError(f"behavior must be a function of a point, got {type(behavior).__name__}")
    own = {k: options.pop(k, v) for k, v in NSR_OPTIONS.items()}
    size = validation.check_int("archive_size", own["archive_size"], 1)
    k = validation.check_int("neighbors", own["neighbors"], 1)
    w = validation.real_number("fitness_weight", own["fitness_weight"])
    n = validation.check_int("num_dims", num_dims, 1)
    d = _behavior_dims(behavior, n)
    bound = inspect.signature(open_es).bind(num_dims, popsize, **options)
    bound.apply_defaults()

    def behaviors(points: Array) -> Array:
        return jax.vmap(lambda x: jnp.reshape(behavior(x), (d,)))(points)

    def init(mean: Array) -> NoveltyArchive:
        empty = NoveltyArchive(jnp.zeros((size, d), mean.dtype), jnp.zeros((), jnp.int32))
        return archive_add(empty, behaviors(mean[None])[0])

    secondary = Secondary(
        init=init,
        values=lambda archive, points: -novelty(archive, behaviors(points), k),
        update=lambda archive, mean: archive_add(archive, behaviors(mean[None])[0]),
        weight=lambda params: params.fitness_weight,
    )
    return build_open_es(
        dict(bound.arguments),
        name="nsr_es",
        params_cls=NSRESParams,
        extra_fields=({"fitness_weight": w}, _RANGES),
        secondary=secondary,
        extra_options=dict(behavior=behavior, archive_size=size, neighbors=k),
    )


_RANGES = (validation.field("fitness_weight", 0.0, 1.0, lower_closed=True, upper_closed=True),)
"""``0 <= fitness_weight <= 1``."""


def _behavior_dims(behavior: Callable[[Array], Array], n: int) -> int:
    """The d of ``behavior((n,))``; its output must be a real scalar or vector."""
    try:
        out = jax.eval_shape(behavior, jax.ShapeDtypeStruct((n,), jnp.result_type(float)))
    except Exception as err:  # noqa: BLE001 - reported with the cause chained
        raise ValueError(f"behavior failed on a point of shape ({n},): {err}") from err
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    real = dtype is not None and jnp.issubdtype(dtype, jnp.floating)
    if shape is None or len(shape) > 1 or 0 in shape or not real:
        raise ValueError(
            "behavior must map a point (n,) to a real scalar or vector (d,), got "
            f"{type(out).__name__} of shape {shape} and dtype {dtype}"
        )
    return math.prod(shape)
