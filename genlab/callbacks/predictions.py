"""`WriteSamples`: what `genlab predict` does with a generator's samples — PNG files and a grid, for other tools."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy
from lightning.pytorch.callbacks import BasePredictionWriter
from torchvision.utils import make_grid

from genlab.atomic_files import save_png
from genlab.callbacks.run_files import run_dir, to_unit_range

# Lightning looks for a DataLoader's batch sampler to hand writers the item indices; genlab's loader sends them
# in the batch itself (the third tensor), so that lookup's warning says nothing a user should act on.
warnings.filterwarnings("ignore", message="Couldn't infer the batch indices fetched from your dataloader: `TensorLoader")


class WriteSamples(BasePredictionWriter):
    """Writes every predicted image as `predictions/<test item>.png` in the run folder (e.g. 000042.png: the same
    image for any process count), and the first `grid_size` images of rank 0 as `predictions/grid.png`.
    2-D points (the toy GAN) go to one CSV per batch, `predictions/<rank>-<batch>.csv`, with an item column.

    `genlab predict` adds it when no other prediction writer is configured; one image is drawn per test-split
    item, so `--trainer.limit_predict_batches` chooses how many.
    """

    def __init__(self, grid_size: int = 64, folder: str = "predictions") -> None:
        super().__init__(write_interval="batch")
        self.grid_size, self.folder = grid_size, folder
        self.written = 0

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
        for item, image in zip(items.tolist(), images):
            save_png(image, folder / f"{item:06d}.png")
        self.written += len(images)
        if batch_idx == 0 and trainer.is_global_zero:
            shown = images[: self.grid_size]
            save_png(make_grid(shown, nrow=max(1, round(len(shown) ** 0.5)), padding=2, pad_value=1.0),
                       folder / "grid.png")
