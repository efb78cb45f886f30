"""One module per strategy; `cma_family` holds what the CMA-ES variants share (`CMAParams`)."""

from evojax_cma.strategies.cma_es import CMAState, cma_es
from evojax_cma.strategies.cma_family import CMAParams
from evojax_cma.strategies.lm_ma_es import LMMAParams, LMMAState, lm_ma_es
from evojax_cma.strategies.nsr_es import NoveltyArchive, NSRESParams, nsr_es
from evojax_cma.strategies.open_es import OpenESParams, open_es
from evojax_cma.strategies.sep_cma_es import SepCMAParams, SepCMAState, sep_cma_es
from evojax_cma.strategies.variational import VariationalParams, variational

__all__ = [
    "CMAParams",
    "CMAState",
    "LMMAParams",
    "LMMAState",
    "NSRESParams",
    "NoveltyArchive",
    "OpenESParams",
    "SepCMAParams",
    "SepCMAState",
    "VariationalParams",
    "cma_es",
    "lm_ma_es",
    "nsr_es",
    "open_es",
    "sep_cma_es",
    "variational",
]
