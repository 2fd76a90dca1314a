"""The training machinery every model shares: exact resume (`resume`), the divergence guard (`divergence`),
crash-safe checkpoints (`checkpoints`) and the `GenlabModule` that wires them into Lightning (`module`)."""

from genlab.training.divergence import DivergenceGuard, gradient_norm, optimized_parameters
from genlab.training.module import GenlabModule

__all__ = ["DivergenceGuard", "GenlabModule", "gradient_norm", "optimized_parameters"]
