"""A denoising autoencoder: corrupt each clean batch, train a network to give the clean images back."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from genlab.data.corruption import Corruption, PatchNoise
from genlab.models.base import GenlabModule, divergence_policy

#: PSNR of an exact copy would be infinite; per-image errors are floored here, which caps PSNR at 100 dB.
_MSE_FLOOR = 1e-10


def psnr(images: Tensor, references: Tensor, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [-1, 1] (peak = the full range, as for [0, 1]).

    10·log10(1 / MSE) with the MSE taken on intensities in [0, 1], i.e. on (images - references) / 2, over
    all pixels or only those where the boolean `mask` (broadcastable to the images) is true.
    """
    squared = ((images - references) / 2).pow(2)
    if mask is None:
        mse = squared.flatten(1).mean(dim=1)
    else:
        weights = mask.expand_as(squared).to(squared.dtype)
        mse = (squared * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1)
    return -10 * torch.log10(mse.clamp_min(_MSE_FLOOR))


class DenoisingAutoencoder(GenlabModule):
    """Trains `network` to map corrupted images back to the clean ones by mean squared error.

    Training batches are corrupted with the global RNG (seeded by seed_everything and restored on resume);
    validation and test batches with a generator seeded by `eval_seed` + batch index, so every evaluation
    sees the same noisy images. Validation and test log the loss and the mean per-image PSNR against the
    clean images of the noisy input (`psnr/noisy`) and of the restoration (`psnr/restored`); for a corruption
    with a known region (PatchNoise's patch) also the PSNR inside that region (`psnr/…_region`), where
    the noise is: outside it the noisy image is exact, so the whole-image figure also measures how well the
    network copies the untouched pixels.

    Args:
        network: maps images (N x C x H x W in [-1, 1]) to images of the same shape, e.g. `MLPAutoencoder`.
        corruption: how clean images are corrupted; default `PatchNoise()` (one 8x8 patch of noise per image).
        optimizer: optimizer class and settings.
        eval_seed: seed of the validation/test corruption.
        on_divergence: when the loss, gradients or weights turn NaN or infinite, "stop" saves the last good
            state as checkpoints/diverged-iteration_N.ckpt and ends the run with one line naming the iteration;
            "skip" leaves that update out (logged as `divergence/skipped_updates`).
    """

    def __init__(
        self,
        network: nn.Module,
        corruption: Corruption | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        eval_seed: int = 0,
        on_divergence: Literal["stop", "skip"] = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network", "corruption", "optimizer"])
        self.network = network
        self.corruption = corruption if corruption is not None else PatchNoise()
        self.optimizer, self.eval_seed = optimizer, eval_seed
        self.on_divergence = divergence_policy(on_divergence)

    def corrupt(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.corruption(images, generator)

    def restore(self, noisy: Tensor) -> Tensor:
        return self.network(noisy)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        in_shape = getattr(self.network, "in_shape", None)
        if in_shape is not None:
            self.check_data_shape(tuple(in_shape), "model.network's in_shape")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.build_optimizer(self.optimizer, self.parameters(), "model.optimizer")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        self.remember_buffers()
        clean = batch[0]
        loss = F.mse_loss(self.restore(self.corrupt(clean)), clean)
        self.log("loss/mse", loss.detach(), on_step=True, on_epoch=False)
        self._update_loss = loss.detach()  # checked with the gradients before the step
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.check_automatic_update(optimizer)

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, prefix: str) -> None:
        clean = batch[0]
        noisy, region = self.corruption.corrupt(clean, torch.Generator().manual_seed(self.eval_seed + batch_idx))
        restored = self.restore(noisy)
        metrics = {
            f"{prefix}/loss/mse": F.mse_loss(restored, clean),
            f"{prefix}/psnr/noisy": psnr(noisy, clean).mean(),
            f"{prefix}/psnr/restored": psnr(restored, clean).mean(),
        }
        if region is not None:
            metrics[f"{prefix}/psnr/noisy_region"] = psnr(noisy, clean, region).mean()
            metrics[f"{prefix}/psnr/restored_region"] = psnr(restored, clean, region).mean()
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=clean.shape[0])

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")
