"""The training machinery every model shares: exact resume (`resume`), the divergence guard (`divergence`),
crash-safe checkpoints (`checkpoints`) and the `TrainingModule` that wires them into Lightning (`module`)."""

from genlab.training.divergence import DivergenceGuard, optimized_parameters, update_norms
from genlab.training.module import TrainingModule

__all__ = ["DivergenceGuard", "TrainingModule", "optimized_parameters", "update_norms"]
