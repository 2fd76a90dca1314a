"""genlab: a PyTorch Lightning experiment framework for the classic deep generative models."""

__version__ = "0.1.0"
