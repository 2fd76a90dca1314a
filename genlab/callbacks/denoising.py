"""Clean / noisy / restored triplets of a denoising model, saved as PNG and logged to TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import lightning as L
import torch
from torch import Tensor
from torchvision.utils import make_grid

from genlab.callbacks.run_files import save_artifact, to_unit_range
from genlab.errors import GenlabError
from genlab.models.base import evaluation_mode
from genlab.rng import keeps_training_rng
from genlab.runtime import iterations_done


@runtime_checkable
class Denoises(Protocol):
    """What the callback needs: `corrupt(images, generator)` and `restore(noisy)`, images in [-1, 1]."""

    def corrupt(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor: ...

    def restore(self, noisy: Tensor) -> Tensor: ...


def _first_images(loader: object, count: int) -> Tensor:
    images: list[Tensor] = []
    for batch in loader:  # type: ignore[attr-defined]
        images.append(batch[0])
        if sum(len(chunk) for chunk in images) >= count:
            break
    return torch.cat(images)[:count]


class DenoisingTriplets(L.Callback):
    """After every validation epoch (and a test run): the first `num_images` images of that split, corrupted
    with a fixed seed, and their restorations, as a grid of three rows: clean, noisy, restored.

    Args:
        num_images: columns of the grid.
        seed: seed of the corruption, so every epoch's grid shows the same noisy images.
    """

    def __init__(self, num_images: int = 8, seed: int = 0) -> None:
        if num_images < 1:
            raise GenlabError(f"DenoisingTriplets num_images must be at least 1, got {num_images}")
        self.num_images, self.seed = num_images, seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, Denoises):
            raise GenlabError(f"DenoisingTriplets needs a denoising model; {type(pl_module).__name__} has no restore")
        if trainer.datamodule is None:
            raise GenlabError("DenoisingTriplets needs a data module: configure data:")

    def grid(self, model: Denoises, clean: Tensor) -> Tensor:
        """A CHW image in [0, 1]: clean images on the first row, noisy on the second, restored on the third."""
        with evaluation_mode(model):  # type: ignore[arg-type]
            noisy = model.corrupt(clean, torch.Generator().manual_seed(self.seed))
            restored = model.restore(noisy)
        rows = torch.cat([clean, noisy, restored])
        return make_grid(to_unit_range(rows), nrow=len(clean), padding=2, pad_value=1.0)

    @keeps_training_rng
    def draw(self, trainer: L.Trainer, model: L.LightningModule, split: Literal["val", "test"]) -> Path | None:
        if not trainer.is_global_zero:
            return None
        loader = trainer.datamodule.val_dataloader() if split == "val" else trainer.datamodule.test_dataloader()
        image = self.grid(model, _first_images(loader, self.num_images).to(model.device))  # type: ignore[arg-type]
        iteration = iterations_done(trainer)
        name = f"val_iteration_{iteration:07d}.png" if split == "val" else "test.png"
        return save_artifact(trainer, f"denoising/{name}", image, f"denoising/{split}", iteration)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.draw(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer, pl_module, "test")
