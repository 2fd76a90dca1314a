"""Callbacks that talk to models only through `GenerativeModule`'s sampling interface."""

from genlab.callbacks.checkpoint import RunCheckpoint, SafeCheckpointIO
from genlab.callbacks.sample_grid import SampleGrid

__all__ = ["RunCheckpoint", "SafeCheckpointIO", "SampleGrid"]
