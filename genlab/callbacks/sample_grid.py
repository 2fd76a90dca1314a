"""A grid of samples from one fixed-seed noise batch, saved as PNG and logged to TensorBoard as training goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchvision.utils import make_grid

from genlab import run_layout
from genlab.callbacks.run_files import save_artifact, to_unit_range
from genlab.errors import GenlabError
from genlab.models.base import GenerativeModule, evaluation_mode
from genlab.rng import keeps_training_rng
from genlab.runtime import iterations_done


class SampleGrid(L.Callback):
    """Every `every_n_iterations` training batches (and at the end) decodes the same fixed noise.

    Each grid draws its noise afresh from the model's `sample_latent` with a generator seeded by `seed`: the
    same noise every time (and in a resumed run) for a fixed prior, and the same draw from the current prior
    for a model whose sampling prior is fitted as it trains (the VAE's mixture). Conditional models get one row
    per class. A model that evaluations score under a second sampler too (a GAN with a moving average of its
    generator: `…@ema`) gets that sampler's grid from the same noise beside it, in `samples/<sampler>/`.

    Args:
        every_n_iterations: batches between grids (a batch = one discriminator step; docs/guide.md: Iterations and
            steps).
        num_samples: images in the grid (rounded down to whole rows per class when conditional).
        nrow: images per row (default: the square root, or the images per class when conditional).
        seed: seed of the fixed noise.
        keep_last: keep only the newest N grid files on disk (TensorBoard still has every grid); None keeps all.
    """

    def __init__(
        self,
        every_n_iterations: int = 200,
        num_samples: int = 64,
        nrow: int | None = None,
        seed: int = 0,
        keep_last: int | None = None,
    ):
        if every_n_iterations < 1 or num_samples < 1 or (keep_last is not None and keep_last < 1):
            raise GenlabError("SampleGrid every_n_iterations, num_samples and keep_last must be at least 1")
        self.every_n_iterations, self.num_samples, self.nrow, self.seed = every_n_iterations, num_samples, nrow, seed
        self.keep_last = keep_last
        self._last_saved = -1

    @property
    def state_key(self) -> str:
        settings = {"every_n_iterations": self.every_n_iterations, "num_samples": self.num_samples}
        return f"{type(self).__qualname__}{settings!r}"  # Lightning's own format: older checkpoints still match

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, GenerativeModule):
            raise GenlabError(f"SampleGrid needs a generative model; {type(pl_module).__name__} cannot sample")

    def _fixed_inputs(self, model: GenerativeModule) -> tuple[Tensor, Tensor | None]:
        count, labels = self.num_samples, None
        if model.num_classes:
            per_class = max(1, self.num_samples // model.num_classes)
            count = per_class * model.num_classes
            labels = torch.arange(model.num_classes, device=model.device).repeat_interleave(per_class)
        return model.sample_latent(count, generator=torch.Generator().manual_seed(self.seed)), labels

    def grid(self, model: GenerativeModule) -> Tensor:
        """The current grid as a CHW image in [0, 1]."""
        noise, labels = self._fixed_inputs(model)
        with evaluation_mode(model):
            images = to_unit_range(model.decode(noise, labels))
        if images.dim() != 4:
            raise GenlabError(
                f"SampleGrid draws images, but {type(model).__name__} samples have shape {tuple(images.shape[1:])}:"
                " use ToyGANPlots for 2-D data"
            )
        if self.nrow is not None:
            nrow = self.nrow
        elif model.num_classes:
            nrow = len(images) // model.num_classes
        else:
            nrow = max(1, round(len(images) ** 0.5))
        return make_grid(images, nrow=nrow, padding=2, pad_value=1.0)

    @keeps_training_rng
    def save(self, trainer: L.Trainer, model: GenerativeModule) -> Path | None:
        """Write the grid (and one per sampler scored alongside) for the current iteration; the main grid's path."""
        iteration = iterations_done(trainer)
        if iteration == self._last_saved or not trainer.is_global_zero:
            return None
        self._last_saved = iteration
        path = self._save_one(trainer, self.grid(model), run_layout.SAMPLES, iteration)
        for variant in model.scored_alongside():
            with model.sampler(variant):
                self._save_one(trainer, self.grid(model), f"samples/{variant}", iteration)
        return path

    def _save_one(self, trainer: L.Trainer, image: Tensor, folder: str, iteration: int) -> Path | None:
        tag = folder.replace("samples/", "samples@")
        path = save_artifact(trainer, f"{folder}/iteration_{iteration:07d}.png", image, tag, iteration)
        if path is not None and self.keep_last is not None:
            for old in sorted(path.parent.glob("iteration_*.png"))[: -self.keep_last]:
                old.unlink()
        return path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if iterations_done(trainer) % self.every_n_iterations == 0:
            self.save(trainer, pl_module)  # type: ignore[arg-type]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, pl_module)  # type: ignore[arg-type]
