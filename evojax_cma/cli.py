"""The command line: ``python -m evojax_cma`` (or ``evojax-cma``) minimises a function.

The function is a benchmark of `evojax_cma.problems` named by its name (``rosenbrock``),
or one from the user's code, ``module:function`` or ``path/to/file.py:function``: a
NumPy or JAX function of one point ``(n,)`` returning a real number. The run is
`evojax_cma.fmin` with pycma's option names (``--popsize``, ``--maxfevals``,
``--ftarget``, ``--restarts``, ``--bipop``, ``--seed``, ``--bounds``, any other
termination option through ``--option NAME=VALUE``); a tqdm bar shows progress unless
``--quiet``. With ``--out DIR`` the history is written as ``history.json`` and
``history.npz`` (the columns of `evojax_cma.history.History` in generation order;
`load_history` reads the ``.npz`` back for `evojax_cma.plot.plot`), and pycma's four
panels as ``plot.png``. The run ends with a summary like pycma's: termination reasons,
evaluations, best f and best x.

Exit status: 0 when the run ends (whether or not ``ftarget`` was reached); 2 for bad
arguments (the message names the argument); 1 when the objective raises or returns a
bad value (the message names the candidate, from `evojax_cma.FminError`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evojax_cma import problems
from evojax_cma.core.termination import STOP_NAMES
from evojax_cma.run.keywords import RestartKeywords

PROBLEMS: dict[str, Callable[..., Any]] = {
    **problems.HANSEN_SUITE,
    **{f.__name__: f for f in (problems.rastrigin, problems.schwefel, problems.griewank)},
    "linear": problems.linear,
}
"""The benchmark functions the command line knows by name (JAX functions of one point)."""

STRATEGIES = ("cma_es", "sep_cma_es", "lm_ma_es", "open_es", "variational")
"""Values of ``--strategy``; restarts need ``cma_es`` (`evojax_cma.fmin` rebuilds it)."""

_SCHEDULE = RestartKeywords()  # fmin's restart defaults, the command line's too
_OPTIONS = tuple(name for name in STOP_NAMES if name not in ("invalid_input",))
_FORMATS = ("json", "npz", "both")


class _UsageError(Exception):
    """A bad argument, found after parsing: reported by argparse with exit status 2."""


def floats(text: str) -> list[float]:
    """A scalar or a comma list of numbers (``none`` is no bound: ``nan``), for argparse."""
    try:
        return [
            math.nan if item.strip().lower() == "none" else float(item) for item in text.split(",")
        ]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or a comma-separated list of numbers, got {text!r}"
        ) from None


def _positive_int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _option(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or name not in _OPTIONS:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME one of {', '.join(_OPTIONS)}, got {text!r}"
        )
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} needs a number, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m evojax_cma``."""
    p = argparse.ArgumentParser(
        prog="evojax-cma",
        description="Minimise a function with CMA-ES (evojax_cma.fmin, pycma's options).",
        epilog="Negative lists need '=': --x0=-1,2. A bound 'none' is no bound on that side. "
        "Exit status: 0 done, 1 the function failed, 2 bad arguments.",
    )
    p.add_argument(
        "function",
        help=f"a benchmark ({', '.join(PROBLEMS)}), module:function or path/to/file.py:function"
        " (a NumPy or JAX function of one point)",
    )
    p.add_argument("--dim", type=_positive_int(1), help="dimension n (or give --x0 as a list)")
    p.add_argument("--x0", type=floats, default=[0.5], help="start point: scalar or list (0.5)")
    p.add_argument("--sigma0", type=_positive_float, default=0.5, help="initial step size (0.5)")
    p.add_argument("--popsize", type=_positive_int(2), help="λ (default 4 + floor(3 ln n))")
    p.add_argument("--maxfevals", type=_positive_int(1), help="evaluations over all runs")
    p.add_argument("--maxiter", type=_positive_int(1), help="iterations of a run")
    p.add_argument("--ftarget", type=float, help="stop when f <= ftarget")
    restarts, incpopsize = _SCHEDULE.restarts, float(_SCHEDULE.incpopsize)
    p.add_argument(
        "--restarts", type=_positive_int(0), default=restarts, help=f"IPOP restarts ({restarts})"
    )
    p.add_argument("--bipop", action="store_true", help="BIPOP instead of IPOP restarts")
    p.add_argument(
        "--incpopsize",
        type=float,
        default=incpopsize,
        help=f"λ factor per restart ({incpopsize:g})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument(
        "--bounds", nargs=2, type=floats, metavar=("LOWER", "UPPER"), help="box constraints"
    )
    p.add_argument("--bound-handler", choices=("transform", "penalty"), default="transform")
    p.add_argument("--strategy", choices=STRATEGIES, default="cma_es")
    p.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"another termination option ({', '.join(_OPTIONS)})",
    )
    p.add_argument("--batched", action="store_true", help="the function takes (popsize, n)")
    p.add_argument(
        "--jax", action="store_true", help="the function is JAX: evaluate jit(vmap(function))"
    )
    p.add_argument("--out", type=pathlib.Path, help="folder for history and plot (none: no files)")
    p.add_argument("--format", choices=_FORMATS, default="both", help="history file format")
    p.add_argument("--no-plot", action="store_true", help="no plot.png in --out")
    p.add_argument("--history-stride", type=_positive_int(1), default=1)
    p.add_argument("--history-capacity", type=_positive_int(1), default=1000)
    p.add_argument("--verb-disp", type=_positive_int(0), default=0, help="print every N iters")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def load_objective(spec: str) -> tuple[Callable[..., Any], bool]:
    """The function named by `spec` and whether it is one of `PROBLEMS` (JAX).

    Raises:
      _UsageError: an unknown name, a module or file that cannot be imported, or a missing
        or non-callable attribute.
    """
    if spec in PROBLEMS:
        return PROBLEMS[spec], True
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise _UsageError(
            f"function: {spec!r} is neither a benchmark ({', '.join(PROBLEMS)}) nor "
            "module:function or path/to/file.py:function"
        )
    try:
        if where.endswith(".py") or os.sep in where or "/" in where:
            module_spec = importlib.util.spec_from_file_location(pathlib.Path(where).stem, where)
            if module_spec is None or module_spec.loader is None or not os.path.isfile(where):
                raise FileNotFoundError(f"no such file {where!r}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:  # a console script does not put it there
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(where)
    except Exception as exc:
        raise _UsageError(
            f"function: cannot import {where!r}: {type(exc).__name__}: {exc}"
        ) from exc
    fn: Any = module
    for part in name.split("."):
        if not hasattr(fn, part):
            raise _UsageError(f"function: {where!r} has no attribute {name!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise _UsageError(f"function: {spec!r} is a {type(fn).__name__}, not a function")
    return fn, False


def _start(args: argparse.Namespace) -> np.ndarray:
    """x0 as a vector of n numbers (from --x0 and --dim)."""
    x0 = np.asarray(args.x0, dtype=float)
    if not np.all(np.isfinite(x0)):
        raise _UsageError(f"--x0 must be finite numbers, got {args.x0}")
    if args.dim is None:
        if x0.size == 1:
            raise _UsageError("--dim is needed when --x0 is a scalar")
        return x0
    if x0.size == 1:
        return np.full(args.dim, x0[0])
    if x0.size != args.dim:
        raise _UsageError(f"--x0 has {x0.size} values but --dim is {args.dim}")
    return x0


def _bounds(args: argparse.Namespace, n: int) -> list[np.ndarray] | None:
    if args.bounds is None:
        return None
    out = []
    for side, values, none in zip(("LOWER", "UPPER"), args.bounds, (-np.inf, np.inf), strict=True):
        v = np.asarray(values, dtype=float)
        if v.size not in (1, n):
            raise _UsageError(f"--bounds {side} has {v.size} values; give 1 or n = {n}")
        out.append(np.broadcast_to(np.where(np.isnan(v), none, v), (n,)).copy())
    return out


def _strategy(args: argparse.Namespace, n: int) -> Any:
    """None (fmin's own CMA-ES, restarts allowed) or the strategy of --strategy."""
    if args.strategy == "cma_es":
        return None
    if args.restarts:
        raise _UsageError(f"--restarts needs --strategy cma_es, got --strategy {args.strategy}")
    import evojax_cma as ec
    from evojax_cma.strategies.cma_family import default_popsize

    build = getattr(ec, args.strategy)
    popsize = args.popsize
    if args.strategy in ("open_es", "variational"):  # no default λ; antithetic: even
        popsize = popsize or default_popsize(n) + default_popsize(n) % 2
        if popsize % 2:
            raise _UsageError(
                f"--popsize must be even for --strategy {args.strategy}, got {popsize}"
            )
    try:
        return build(n, popsize)
    except (TypeError, ValueError) as exc:
        raise _UsageError(f"--strategy {args.strategy}: {exc}") from exc


def _fmin_call(args: argparse.Namespace) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The objective and the keyword arguments of `evojax_cma.fmin` for `args`."""
    fn, known = load_objective(args.function)
    batched = args.batched
    if known or args.jax:
        import jax

        fn = jax.jit(fn if args.batched else jax.vmap(fn))
        batched = True
    x0 = _start(args)
    n = x0.shape[0]
    options: dict[str, Any] = {
        "seed": args.seed,
        "verbose": 0,
        "BoundaryHandler": args.bound_handler,
    }
    if args.verb_disp:
        options.update(verbose=1, verb_disp=args.verb_disp)
    strategy = _strategy(args, n)
    if args.popsize is not None and strategy is None:
        options["popsize"] = args.popsize
    for name in ("ftarget", "maxfevals", "maxiter"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    options.update(dict(args.option))
    bounds = _bounds(args, n)
    if bounds is not None:
        options["bounds"] = bounds
    history = None
    if args.out is not None:
        history = {"stride": args.history_stride, "capacity": args.history_capacity}
    kw: dict[str, Any] = dict(x0=x0, sigma0=args.sigma0, options=options, strategy=strategy)
    kw.update(restarts=args.restarts, bipop=args.bipop, incpopsize=args.incpopsize)
    kw.update(batched=batched, progress=not args.quiet, history=history)
    return fn, kw


def summary(result: Any, options: dict[str, Any]) -> str:
    """pycma-like final lines: termination reasons, evaluations, best f and best x."""
    reasons = [f"{r}={options[r]:g}" if r in options else r for r in result.stop]
    with np.printoptions(precision=8, threshold=20, linewidth=100):
        return "\n".join(
            [
                f"termination on {', '.join(reasons) or '(none)'}",
                f"evaluations: {result.evals}, iterations: {result.iterations}, runs: "
                f"{result.runs}",
                f"best f: {float(result.fbest):.10e}",
                f"best x: {np.asarray(result.xbest)}",
            ]
        )


def _jsonable(a: np.ndarray) -> Any:
    """Nested lists with NaN and inf as None (strict JSON)."""
    if a.dtype.kind != "f":
        return a.tolist()
    values = a.astype(object)
    values[~np.isfinite(a)] = None
    return values.tolist()


def write_outputs(out: pathlib.Path, result: Any, fmt: str, plot: bool, meta: dict) -> list[str]:
    """Write the history (``history.json``/``.npz``) and ``plot.png`` to `out`."""
    from evojax_cma.history import rows

    out.mkdir(parents=True, exist_ok=True)
    columns = rows(result.history)
    count = int(np.sum(columns["generation"] >= 0))
    columns = {name: v[:count] for name, v in columns.items()}
    written = []
    if fmt in ("json", "both"):
        record = {
            **meta,
            "result": {
                "fbest": float(result.fbest),
                "xbest": _jsonable(np.asarray(result.xbest, dtype=float)),
                "evals": int(result.evals),
                "iterations": int(result.iterations),
                "runs": int(result.runs),
                "stop": list(result.stop),
            },
            "history": {name: _jsonable(v) for name, v in columns.items()},
        }
        (out / "history.json").write_text(json.dumps(record, indent=1, allow_nan=False))
        written.append("history.json")
    if fmt in ("npz", "both"):
        stride = np.asarray(result.history.stride)
        arrays: dict[str, Any] = {**columns, "count": np.asarray(count), "stride": stride}
        np.savez(out / "history.npz", **arrays)
        written.append("history.npz")
    if plot:
        from evojax_cma.plot import plot as draw

        draw(result.history, out / "plot.png", title=meta["function"])
        written.append("plot.png")
    return written


def load_history(path: Any) -> Any:
    """The `evojax_cma.history.History` in a ``history.npz`` written by the command line."""
    from evojax_cma.history import History

    with np.load(path, allow_pickle=False) as data:
        return History(**{name: data[name] for name in History._fields})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default ``sys.argv[1:]``); return the exit status.

    Bad arguments exit through argparse (`SystemExit` with status 2).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from evojax_cma import FminError, fmin

    try:
        fn, kw = _fmin_call(args)
    except _UsageError as exc:
        parser.error(str(exc))
    try:
        _, result = fmin(fn, **kw)
    except FminError as exc:
        print(f"{parser.prog}: the function failed: {exc}", file=sys.stderr)
        return 1
    except (TypeError, ValueError) as exc:  # fmin checks its arguments before running
        parser.error(str(exc))
    print(summary(result, kw["options"]))
    if args.out is not None:
        meta = {"function": args.function, "strategy": args.strategy, "argv": argv}
        written = write_outputs(args.out, result, args.format, not args.no_plot, meta)
        print(f"wrote {', '.join(written)} to {args.out}")
    return 0


__all__ = ["PROBLEMS", "STRATEGIES", "build_parser", "load_history", "load_objective", "main"]
