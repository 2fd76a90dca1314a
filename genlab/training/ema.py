"""An exponential moving average of one network's weights (the generator's, for a GAN), kept beside it.

Most GAN papers since Progressive GAN and BigGAN sample from such an average: the raw generator chases the
critic and its samples jitter from step to step; the average smooths that out without changing training.
Lightning's `WeightAveraging` averages the whole LightningModule (the critic too) and leaves the averaged
weights in place after training, which does not fit a GAN. This module averages one network only and keeps
it apart: it is an `nn.Module` held by the model, so it is saved in and restored from checkpoints with the
weights (a resume stays bit-exact), and its weights are the same on every DDP process (it follows weights that DDP
keeps identical). Its BatchNorm running statistics, like the raw generator's, are each process's own (computed
from that process's batches); checkpoints hold the first process's.

The decay follows a warm-up: for the first `warmup_iterations` the average is a plain copy of the network
(early weights are noise, not worth remembering); after that, the k-th update uses
`min(decay, (1 + k) / (10 + k))` (TensorFlow's `ExponentialMovingAverage(num_updates=k)` ramp), so the average
forgets its starting point quickly and then settles at `decay`. Buffers (BatchNorm running statistics) are
copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from genlab.runtime import copy_all, move_all_towards


class WeightAverage(nn.Module):
    """The moving average of `network`'s weights (a frozen copy, updated with `update`).

    Args:
        network: the network to follow; it is copied once here.
        decay: the averaging factor once the ramp has reached it (0.999: a horizon of about 1,000 updates).
        warmup_iterations: updates during which the average simply copies the network.
    """

    def __init__(self, network: nn.Module, decay: float = 0.999, warmup_iterations: int = 1000) -> None:
        super().__init__()
        self.average = copy.deepcopy(network).requires_grad_(False).eval()
        self.decay, self.warmup_iterations = decay, warmup_iterations
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # updates since the warm-up ended
        self._updates_on_host = 0  # the same count, so the decay is computed without a host sync
        self.register_load_state_dict_post_hook(WeightAverage._count_after_loading)

    def train(self, mode: bool = True) -> WeightAverage:
        """The copy stays in eval mode: it is never trained, and sampling chooses its own BatchNorm mode."""
        super().train(mode)
        self.average.eval()
        return self

    def current_decay(self, iteration: int) -> float:
        """The factor the next update uses at `iteration` (0 during the warm-up: a copy)."""
        if iteration <= self.warmup_iterations:
            return 0.0
        k = self.current_updates()
        return min(self.decay, (1 + k) / (10 + k))

    @torch.no_grad()
    def update(self, network: nn.Module, iteration: int, taken: torch.Tensor | None = None) -> None:
        """Move the average towards `network`'s current weights; call it after each of the network's updates.
        `taken` is the device flag of whether that update was applied (the divergence guard's): where it is
        false the average stays still. Nothing here reads a value on the host."""
        beta = self.current_decay(iteration)
        targets, sources = list(self.average.parameters()), [p.detach() for p in network.parameters()]
        if beta == 0.0:  # a skipped update left the network as it was: copying it again changes nothing
            copy_all(targets, sources)
        else:
            weight = 1.0 - beta if taken is None else taken.to(targets[0].dtype) * (1.0 - beta)
            move_all_towards(targets, sources, weight)
            self._updates_on_host = self.current_updates() + 1
            self.updates += 1
        copy_all(list(self.average.buffers()), list(network.buffers()))

    @staticmethod
    def _count_after_loading(module: nn.Module, incompatible_keys: object) -> None:
        module._updates_on_host = int(module.updates)  # loaded weights bring their own count (read once, at loading)

    def current_updates(self) -> int:
        """Updates since the warm-up ended (counted on the host; read from the buffer once, at loading)."""
        return self._updates_on_host

    def settings(self) -> dict[str, float | int]:
        """What a record says about the average it sampled from."""
        return {"decay": self.decay, "warmup_iterations": self.warmup_iterations, "updates": self.current_updates()}
