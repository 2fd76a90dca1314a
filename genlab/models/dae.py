"""A denoising autoencoder: corrupt each clean batch, train a network to give the clean images back."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from genlab.data.corruption import Corruption, PatchNoise
from genlab.metrics.functional import psnr
from genlab.training import DivergenceGuard, TrainingModule


class DenoisingAutoencoder(TrainingModule):
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
        self.divergence = DivergenceGuard(on_divergence)

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
        clean = batch[0]
        loss = F.mse_loss(self.restore(self.corrupt(clean)), clean)
        if self.logging_this_step():  # values logged on other steps are dropped, after costing ~0.1 ms each
            self.log("loss/mse", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, prefix: str) -> None:
        clean = batch[0]
        generator = torch.Generator().manual_seed(self.eval_seed + batch_idx)
        noisy, region = self.corruption.corrupt_with_region(clean, generator)
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
