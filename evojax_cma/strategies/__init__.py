"""One module per strategy."""

from evojax_cma.strategies.cma_es import CMAParams, CMAState, cma_es

__all__ = ["CMAParams", "CMAState", "cma_es"]
