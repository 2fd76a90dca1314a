"""Callbacks that talk to models only through `GenerativeModule`'s sampling interface."""

from genlab.callbacks.alarms import StalledLossAlarm
from genlab.callbacks.denoising import DenoisingTriplets
from genlab.callbacks.interpolation import LatentInterpolation
from genlab.callbacks.memorisation import Memorisation
from genlab.callbacks.metrics import GenerativeMetrics
from genlab.callbacks.predictions import WriteSamples
from genlab.callbacks.report import RunReport
from genlab.callbacks.sample_grid import SampleGrid
from genlab.callbacks.test_results import TestResults
from genlab.callbacks.toy_plots import ToyGANPlots
from genlab.training.checkpoints import RunCheckpoint, SafeCheckpointIO

__all__ = ["DenoisingTriplets", "GenerativeMetrics", "LatentInterpolation", "Memorisation", "RunCheckpoint",
           "RunReport", "SafeCheckpointIO", "SampleGrid", "StalledLossAlarm", "TestResults", "ToyGANPlots",
           "WriteSamples"]
