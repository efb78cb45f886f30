"""Benchmark problems."""

from evojax_cma.problems.functions import (
    HANSEN_SUITE,
    cigar,
    diffpow,
    ellipsoid,
    linear,
    rastrigin,
    rosenbrock,
    sphere,
    tablet,
)

__all__ = [
    "HANSEN_SUITE",
    "cigar",
    "diffpow",
    "ellipsoid",
    "linear",
    "rastrigin",
    "rosenbrock",
    "sphere",
    "tablet",
]
