"""`WriteSamples`: what `genlab predict` does with a generator's samples — PNG files and a grid, or one `.npz`,
for other tools."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import numpy
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torchvision.utils import make_grid

from genlab import run_layout
from genlab.atomic_files import save_png, write_bytes
from genlab.callbacks.run_files import run_dir, to_unit_range

# Lightning looks for a DataLoader's batch sampler to hand writers the item indices; genlab's loader sends them
# in the batch itself (the third tensor), so that lookup's warning says nothing a user should act on.
warnings.filterwarnings("ignore",
                        message="Couldn't infer the batch indices fetched from your dataloader: `TensorLoader")


class WriteSamples(BasePredictionWriter):
    """Writes what `genlab predict` draws into `predictions/` in the run folder.

    - "png": every image as `<item>.png` (e.g. 000042.png: the same image for any process count), and the first
      `grid_size` images of rank 0 as `grid.png`;
    - "npz": one `samples.npz` (`samples-rank<r>.npz` per process under DDP) with `arr_0`, the images as uint8
      N x H x W x C (the array FID tools such as the guided-diffusion evaluator read; the PNGs' pixel values,
      grey images with one channel), `labels` (int64; 0 for unconditional models) and `items`.

    2-D points (the toy GAN) go to one CSV per batch, `<rank>-<batch>.csv`, with an item column. `genlab predict`
    adds this writer when no other is configured (`--sample_format`); `--num_samples` and `--classes` choose what
    is drawn (default: one sample per test-split item, with its label).
    """

    def __init__(self, grid_size: int = 64, folder: str = run_layout.PREDICTIONS,
                 sample_format: Literal["png", "npz"] = "png") -> None:
        super().__init__(write_interval="batch")
        self.grid_size, self.folder, self.sample_format = grid_size, folder, sample_format
        self.written = 0
        self._arrays: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        folder = run_dir(trainer) / self.folder
        folder.mkdir(parents=True, exist_ok=True)
        items = prediction["items"].cpu()
        if prediction["images"].dim() == 2:  # points (the toy GAN): one CSV per batch
            rows = numpy.column_stack([items.numpy(), prediction["images"].float().cpu().numpy()])
            numpy.savetxt(folder / f"{trainer.global_rank}-{batch_idx:05d}.csv", rows, delimiter=",",
                          header="item,x,y", comments="", fmt=["%d", "%.8g", "%.8g"])
            self.written += len(prediction["images"])
            return
        images = to_unit_range(prediction["images"])
        if self.sample_format == "npz":
            labels = prediction.get("labels")
            labels = torch.zeros(len(items), dtype=torch.long) if labels is None else labels.cpu().long()
            self._arrays.append((items, as_bytes(images), labels))
        else:
            for item, image in zip(items.tolist(), images):
                save_png(image, folder / f"{item:06d}.png")
        self.written += len(images)
        if batch_idx == 0 and trainer.is_global_zero:
            shown = images[: self.grid_size]
            save_png(make_grid(shown, nrow=max(1, round(len(shown) ** 0.5)), padding=2, pad_value=1.0),
                     folder / "grid.png")

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._arrays:
            return
        items, images, labels = (torch.cat(parts) for parts in zip(*self._arrays))
        self._arrays = []
        name = "samples.npz" if trainer.world_size == 1 else f"samples-rank{trainer.global_rank}.npz"
        buffer = io.BytesIO()
        numpy.savez(buffer, arr_0=images.numpy(), labels=labels.numpy(), items=items.numpy())
        write_bytes(run_dir(trainer) / self.folder / name, buffer.getvalue())


def as_bytes(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W floats in [0, 1] → uint8 N x H x W x C, rounded as torchvision's `save_image` rounds (so the
    array holds the PNGs' bytes)."""
    return images.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
