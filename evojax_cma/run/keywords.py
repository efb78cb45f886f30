"""The public drivers' keyword vocabulary: each keyword group declared once.

`evojax_cma.minimize`, `evojax_cma.minimize_restarts`, `evojax_cma.fmin` and
`evojax_cma.sweep` share keywords: the problem's (`ProblemKeywords`), the periodic test
evaluation's (`EvaluationKeywords`), the restart schedule's (`RestartKeywords`) and
how a run is watched and kept (`RecordingKeywords`). Each group is a frozen dataclass:
a keyword's name, type, default and meaning are written there and nowhere else.

`driver` gives a function its public signature from the groups it takes: the function
declares one keyword-only parameter per group (``problem: ProblemKeywords``), callers
pass the group's fields as plain keywords (``bounds=(-1, 1)``), and the function receives
the built group. A driver may take a subset of a group's fields (`takes`) or declare
another default for one (``takes(RestartKeywords, restarts=9)``), in its decorator, where
the difference is visible. ``inspect.signature`` and ``help`` list every keyword with its
annotation and default; an unknown keyword is the ``TypeError`` Python raises.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any, TypeVar

from evojax_cma.transforms.base import Pipeline, Transform
from evojax_cma.transforms.noise import NoiseHandler

R = TypeVar("R")
_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def keyword(default: Any, doc: str) -> Any:
    """A group field with its `default` and its one-line meaning `doc` (shown by `help`)."""
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class ProblemKeywords:
    """What the objective is and what lies between it and the strategy.

    Checked by `evojax_cma.run.arguments.problem_and_pipeline` (JAX drivers) and
    `evojax_cma.run.arguments.build_pipeline` (all drivers).
    """

    batched: bool = keyword(
        False, "fn evaluates a whole population (popsize, n) -> (popsize,) at once"
    )
    keyed: bool = keyword(
        False,
        "fn takes a PRNG key last, fn(x, key) or fn(x, data, key): each point of a "
        "generation gets its own key (a batched fn one key per call)",
    )
    n_repeats: int = keyword(
        1, "evaluate each point on this many keys and tell the mean (needs keyed)"
    )
    common_keys: bool = keyword(
        False,
        "every point of a generation gets the same key(s): common random numbers (needs keyed)",
    )
    constraints: Callable[..., Any] | None = keyword(
        None,
        "inequality constraints g(x) <= 0, a function of a point returning (m,) values "
        "(batched: (popsize, m)), handled by pycma's adaptive augmented Lagrangian; "
        "tolstagnation then defaults to 0",
    )
    bounds: Any = keyword(
        None, "(lower, upper), scalars or (n,) vectors (±inf allowed): pycma's bounds"
    )
    bound_handler: str = keyword(
        "transform",
        '"transform" (pycma\'s BoundTransform) or "penalty" (BoundPenalty; CMA family only)',
    )
    encoding: Transform | Pipeline | None = keyword(
        None,
        "a stateless transformation (scaling, log_scale, chain(...)) from the search "
        "space to fn's parameters, applied before the bounds; x0 is in fn's parameters",
    )
    noise_handling: bool | NoiseHandler | None = keyword(
        False,
        "True or evojax_cma.noise_handler(...): UH-CMA-ES (pycma's noise_handler); "
        "tolfacupx then defaults to inf; CMA family only",
    )


@dataclasses.dataclass(frozen=True)
class EvaluationKeywords:
    """A test function scored periodically inside the compiled loop.

    Checked by `evojax_cma.run.evaluation.evaluation_spec`.
    """

    evaluate: Callable[..., Any] | None = keyword(
        None,
        "a test function, called like a per-point fn (evaluate(x[, data][, key])), "
        "returning one real score; results in RunResult.evaluation",
    )
    evaluate_every: int | None = keyword(None, "generations between evaluations (default 10)")
    evaluate_on: str = keyword("mean", '"mean" (the decoded state.mean) or "best" (best_x)')
    evaluate_maximize: bool | None = keyword(
        None, "whether a larger score is better (default: maximize)"
    )


@dataclasses.dataclass(frozen=True)
class RestartKeywords:
    """pycma's IPOP/BIPOP restart schedule (`evojax_cma.run.schedule`)."""

    restarts: int = keyword(
        0, "restarts with a larger population (pycma's restarts; small BIPOP runs do not count)"
    )
    bipop: bool | float = keyword(False, "False: IPOP; True (or a budget ratio > 0): BIPOP")
    incpopsize: float = keyword(2, "factor of the population size between large runs")


@dataclasses.dataclass(frozen=True)
class RecordingKeywords:
    """How a run is watched and kept: history, progress bar, checkpoints, resuming."""

    history: bool | dict[str, int] | None = keyword(
        None,
        "record an evojax_cma.history.History: True (every generation, the last 1000 "
        "records) or a dict of capacity, stride and coordinates",
    )
    progress: bool = keyword(
        False, "show a tqdm bar (generation, evaluations, best f, sigma); top-level calls only"
    )
    segment: int = keyword(100, "generations per compiled segment for progress and checkpoints")
    checkpoint: Any = keyword(
        None, "a path: the run is saved there every checkpoint_every generations and at the end"
    )
    checkpoint_every: int | None = keyword(
        None, "generations between checkpoints (default: every segment; fmin: 100)"
    )
    resume: Any = keyword(
        None, "a path written by checkpoint: continue that run bit for bit, same settings"
    )

    def segments(self) -> dict[str, Any]:
        """The keywords of `evojax_cma.run.segments.run_in_segments` (all but history)."""
        return {k: v for k, v in keyword_items(self).items() if k != "history"}


@dataclasses.dataclass(frozen=True)
class Takes:
    """The fields of `group` that a driver takes, and the defaults it declares otherwise."""

    group: type
    names: tuple[str, ...]
    defaults: tuple[tuple[str, Any], ...] = ()

    def fields(self) -> list[tuple[str, Any, dataclasses.Field[Any]]]:
        """``(name, default, field)`` of each field taken, with the driver's defaults."""
        declared = {f.name: f for f in dataclasses.fields(self.group)}
        defaults = dict(self.defaults)
        return [(n, defaults.get(n, declared[n].default), declared[n]) for n in self.names]


def takes(group: type, *names: str, without: tuple[str, ...] = (), **defaults: Any) -> Takes:
    """A driver's use of `group`: its fields `names` (default: all, less `without`).

    ``defaults`` are the driver's own defaults for some of them (stated where the driver
    is declared).

    Raises:
      TypeError: a name or default that is not a field of `group`.
    """
    fields = field_names(group)
    chosen = names or tuple(f for f in fields if f not in without)
    unknown = sorted((set(chosen) | set(without) | set(defaults)) - set(fields))
    if unknown:
        raise TypeError(f"{group.__name__} has no field(s) {unknown}")
    missing = sorted(set(defaults) - set(chosen))
    if missing:
        raise TypeError(f"defaults for {missing}, which are not taken from {group.__name__}")
    return Takes(group, chosen, tuple(defaults.items()))


def field_names(group: Any) -> tuple[str, ...]:
    """The field names of a keyword group (class or instance), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(group))


def keyword_items(group: Any) -> dict[str, Any]:
    """A built group as ``{keyword: value}`` (to forward to another driver)."""
    return {name: getattr(group, name) for name in field_names(group)}


def driver(**groups: type | Takes) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give a public driver its keywords from `groups` (parameter name -> group or `takes`).

    The decorated function declares each group as a keyword-only parameter without a
    default (``problem: ProblemKeywords``). Its public signature (``__signature__``, what
    ``inspect.signature`` and ``help`` show) replaces those parameters by the groups'
    fields, with their annotations and defaults; callers pass fields as keywords and the
    function receives the built groups. Positional parameters are untouched; an unknown
    keyword, or a field the driver does not take, is Python's own ``TypeError`` naming
    the function and the keyword (or goes to the function's ``**kwargs``, if it has one).
    """
    uses = {name: g if isinstance(g, Takes) else takes(g) for name, g in groups.items()}
    owner = {field: name for name, use in uses.items() for field in use.names}

    def decorate(body: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(body)
        params = signature.parameters
        for name in uses:
            if name not in params or params[name].kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"{body.__name__} must declare keyword-only {name!r}")
        clash = sorted(set(owner) & set(params))
        if clash:
            raise TypeError(f"{body.__name__} declares group keywords {clash} itself")
        own = [p for p in params.values() if p.name not in uses]
        rest = [p for p in own if p.kind is inspect.Parameter.VAR_KEYWORD]
        fields: list[inspect.Parameter] = []
        for use in uses.values():
            for name, default, f in use.fields():
                fields.append(inspect.Parameter(name, _KEYWORD, default=default, annotation=f.type))
        public = [p for p in own if p not in rest] + fields + rest
        built = {name: dict(use.defaults) for name, use in uses.items()}

        @functools.wraps(body)
        def call(*args: Any, **kwargs: Any) -> R:
            values = {name: dict(given) for name, given in built.items()}
            for name in uses:
                if name in kwargs:  # the group itself is not a keyword of the public driver
                    raise TypeError(
                        f"{body.__name__}() got an unexpected keyword argument {name!r}"
                    )
            for field in [k for k in kwargs if k in owner]:
                values[owner[field]][field] = kwargs.pop(field)
            for name, use in uses.items():
                kwargs[name] = use.group(**values[name])
            return body(*args, **kwargs)

        call.__signature__ = signature.replace(parameters=public)  # type: ignore[attr-defined]
        call.__doc__ = inspect.cleandoc(body.__doc__ or "") + _keywords_doc(uses)
        return call

    return decorate


def _keywords_doc(uses: dict[str, Takes]) -> str:
    """The shared keywords' meanings, appended to a driver's docstring for ``help``."""
    lines = ["", "", "Shared keywords (`evojax_cma.run.keywords`; name, default, meaning):"]
    for use in uses.values():
        lines.append(f"  {use.group.__name__}:")
        for name, default, f in use.fields():
            line = f"{name}={default!r}: {f.metadata['doc']}."
            lines.append(textwrap.fill(line, 92, initial_indent="    ", subsequent_indent=" " * 6))
    return "\n".join(lines) + "\n"


__all__ = [
    "EvaluationKeywords",
    "ProblemKeywords",
    "RecordingKeywords",
    "RestartKeywords",
    "Takes",
    "driver",
    "field_names",
    "keyword",
    "keyword_items",
    "takes",
]
