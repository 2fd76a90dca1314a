"""The training machinery every model shares: exact resume (`resume`), the divergence guard (`divergence`),
crash-safe checkpoints (`checkpoints`) and the `GenlabModule` that wires them into Lightning (`module`)."""

from genlab.training.divergence import DivergenceGuard, optimized_parameters, update_norms
from genlab.training.module import GenlabModule

__all__ = ["DivergenceGuard", "GenlabModule", "optimized_parameters", "update_norms"]
