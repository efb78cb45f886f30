"""evojax_cma: evolution strategies in JAX, with CMA-ES as pycma defines it."""

from evojax_cma.core.shaping import centered_ranks, rank_order, ranks
from evojax_cma.core.termination import STOP_NAMES, StopOptions, stop_reasons
from evojax_cma.core.types import (
    CHUNKED,
    COVARIANCE,
    DIAGONAL,
    MASKED_POPSIZE,
    WEIGHTED,
    Strategy,
)
from evojax_cma.run import (
    FminCheckpoint,
    FminError,
    FminResult,
    FminTypeError,
    FminValueError,
    RestartResult,
    RunResult,
    chunked_fitness,
    fmin,
    minimize,
    minimize_restarts,
    uniform_x0,
)
from evojax_cma.run.host_evaluation import RayExecutor
from evojax_cma.sharding import PopulationSharding, population_sharding, shard_runs
from evojax_cma.strategies._score_function import GaussianState
from evojax_cma.strategies.cma_es import CMAState, cma_es
from evojax_cma.strategies.cma_family import CMAParams
from evojax_cma.strategies.lm_ma_es import LMMAParams, LMMAState, lm_ma_es
from evojax_cma.strategies.nsr_es import NoveltyArchive, NSRESParams, nsr_es
from evojax_cma.strategies.open_es import OpenESParams, open_es
from evojax_cma.strategies.sep_cma_es import SepCMAParams, SepCMAState, sep_cma_es
from evojax_cma.strategies.variational import VariationalParams, variational
from evojax_cma.sweep import SweepResult, sweep
from evojax_cma.transforms import (
    NoiseHandler,
    Pipeline,
    Transform,
    bound_penalty,
    bound_transform,
    chain,
    log_scale,
    noise_handler,
    scaling,
)

__version__ = "0.1.0"

__all__ = [
    "CHUNKED",
    "COVARIANCE",
    "DIAGONAL",
    "MASKED_POPSIZE",
    "STOP_NAMES",
    "WEIGHTED",
    "CMAParams",
    "CMAState",
    "SepCMAParams",
    "SepCMAState",
    "FminCheckpoint",
    "FminError",
    "FminResult",
    "FminTypeError",
    "FminValueError",
    "GaussianState",
    "OpenESParams",
    "NSRESParams",
    "NoveltyArchive",
    "VariationalParams",
    "LMMAParams",
    "LMMAState",
    "NoiseHandler",
    "Pipeline",
    "PopulationSharding",
    "Transform",
    "bound_penalty",
    "RayExecutor",
    "RestartResult",
    "RunResult",
    "StopOptions",
    "Strategy",
    "bound_transform",
    "centered_ranks",
    "chain",
    "chunked_fitness",
    "cma_es",
    "fmin",
    "lm_ma_es",
    "log_scale",
    "minimize",
    "minimize_restarts",
    "noise_handler",
    "open_es",
    "nsr_es",
    "population_sharding",
    "rank_order",
    "ranks",
    "scaling",
    "sep_cma_es",
    "shard_runs",
    "stop_reasons",
    "sweep",
    "SweepResult",
    "uniform_x0",
    "variational",
]
