"""`evaluation_mode`: how every sample is drawn (eval mode, no gradients, the model's own BatchNorm choice)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the duration, then the previous mode back.

    A model whose `batch_statistics_layers()` names BatchNorm layers (a GAN sampling as the reference notebooks
    do, with its generator in training mode) gets those layers normalising with the statistics of the batch
    being drawn, without touching their running statistics.
    """
    was_training = module.training
    module.eval()
    batch_layers = list(getattr(module, "batch_statistics_layers", list)())
    for layer in batch_layers:
        layer.training, layer.track_running_stats = True, False  # batch statistics, running ones left alone
    try:
        with torch.no_grad():
            yield
    finally:
        for layer in batch_layers:
            layer.track_running_stats = True
        module.train(was_training)
