"""Drivers: the jitted, vmappable loop and the host-side ``fmin``."""

from evojax_cma.run.host import FminResult, fmin
from evojax_cma.run.host_resume import FminCheckpoint, FminError, FminTypeError, FminValueError
from evojax_cma.run.loop import RunResult, chunked_fitness, minimize
from evojax_cma.run.restarts import RestartResult, minimize_restarts, uniform_x0

__all__ = [
    "FminCheckpoint",
    "FminError",
    "FminResult",
    "FminTypeError",
    "FminValueError",
    "RestartResult",
    "RunResult",
    "chunked_fitness",
    "fmin",
    "minimize",
    "minimize_restarts",
    "uniform_x0",
]
