"""Drivers: the jitted, vmappable loop and the host-side ``fmin``."""

from evojax_cma.run.host import FminResult, fmin
from evojax_cma.run.loop import RunResult, chunked_fitness, minimize

__all__ = ["FminResult", "RunResult", "chunked_fitness", "fmin", "minimize"]
