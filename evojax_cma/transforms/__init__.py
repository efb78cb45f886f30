"""Problem transformations: what happens between ``ask`` and ``tell`` (see `base`)."""

from evojax_cma.transforms.base import (
    Distribution,
    Evaluated,
    Pipeline,
    Transform,
    chain,
    distribution,
)
from evojax_cma.transforms.bound_penalty import BoundPenalty, bound_penalty
from evojax_cma.transforms.constraints import AugmentedLagrangian, augmented_lagrangian
from evojax_cma.transforms.encodings import (
    BoundTransform,
    ClipToBox,
    LogScale,
    Scaling,
    bound_transform,
    clip_to_box,
    log_scale,
    scaling,
)
from evojax_cma.transforms.noise import NoiseHandler, noise_handler

__all__ = [
    "AugmentedLagrangian",
    "BoundPenalty",
    "BoundTransform",
    "ClipToBox",
    "Distribution",
    "Evaluated",
    "LogScale",
    "NoiseHandler",
    "Pipeline",
    "Scaling",
    "Transform",
    "augmented_lagrangian",
    "bound_penalty",
    "bound_transform",
    "chain",
    "clip_to_box",
    "distribution",
    "log_scale",
    "noise_handler",
    "scaling",
]
