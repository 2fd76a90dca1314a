"""DDP for alternating updates (GANs): each update averages the gradients of the network it steps, itself.

torch's `DistributedDataParallel` wraps the whole LightningModule and expects every parameter that requires a
gradient to get one in every backward pass. A GAN's critic update leaves the generator without gradients and its
generator update leaves the critic frozen, so plain DDP refuses, and `find_unused_parameters=True` makes it walk
the autograd graph after every backward to find out which parameters were used, and reduce in buckets sized for
the whole model. genlab does what stylegan2-ada-pytorch does instead: no wrapper; the processes start from the
first process's weights and buffers, and each update all-reduces the gradients of the parameters it is about to
step, flattened into one buffer - one collective per update, which on NCCL runs on the device without the host
waiting. The average is the one DDP takes (the sum over processes divided by their number).

BatchNorm running statistics stay each process's own, as under DDP (which overwrites them with the first
process's at every forward of its wrapper, so the first process's never see another's batches either way):
checkpoints hold the first process's and every evaluation samples with them
(`genlab.callbacks.metrics` shares them). Training itself normalises with batch statistics, which no process
shares, wrapper or not.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor

from genlab.runtime import copy_all


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_from_first_process(module: torch.nn.Module) -> None:
    """Every process takes the first process's weights and buffers (what DDP's wrapper does when it is built)."""
    if _distributed():
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: list[Tensor]) -> None:
    """The gradients of `parameters` replaced by their mean over the processes: one all-reduce of one flat
    buffer. Call it between backward and the optimizer step; nothing outside torch.distributed does anything."""
    if not _distributed():
        return
    gradients = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if not gradients:
        return
    flat = torch.cat([gradient.reshape(-1) for gradient in gradients])
    dist.all_reduce(flat)
    flat.div_(dist.get_world_size())
    parts = flat.split([gradient.numel() for gradient in gradients])
    copy_all(gradients, [part.view_as(gradient) for part, gradient in zip(parts, gradients)])


class AlternatingUpdatesDDP(DDPStrategy):
    """Lightning's DDP strategy without the DDP wrapper, for models that average their own gradients per update
    (`GAN`: manual optimization). Everything else (processes, samplers, collectives, checkpoints) is Lightning's."""

    def configure_ddp(self) -> None:
        broadcast_from_first_process(self.model)

    def average_gradients(self, parameters: list[Tensor]) -> None:
        """What the model calls between each update's backward and its step."""
        average_gradients(parameters)
