"""Benchmark problems."""

from evojax_cma.problems.functions import (
    HANSEN_SUITE,
    cigar,
    diffpow,
    ellipsoid,
    griewank,
    linear,
    random_rotation,
    rastrigin,
    rosenbrock,
    rotated,
    schwefel,
    sphere,
    tablet,
)

__all__ = [
    "HANSEN_SUITE",
    "cigar",
    "diffpow",
    "ellipsoid",
    "griewank",
    "linear",
    "random_rotation",
    "rastrigin",
    "rosenbrock",
    "rotated",
    "schwefel",
    "sphere",
    "tablet",
]
