"""Latent interpolation figures: rows of (first image, evenly spaced decoded interpolates, last image).

A model that can `encode` (the VAE) interpolates between the codes of test images: one figure for pairs of
the same class (digit) and one for pairs of different classes. A model without an encoder (a GAN)
interpolates between pairs of its own noise vectors (one figure). The figures are drawn at the end of a
fit and in `genlab test --ckpt_path …`, saved as PNG in the run folder and logged to TensorBoard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchvision.utils import make_grid

from genlab.callbacks.run_files import save_artifact, to_unit_range
from genlab.errors import GenlabError
from genlab.models.base import GenerativeModule, evaluation_mode
from genlab.rng import keeps_training_rng


@runtime_checkable
class Encodes(Protocol):
    """The optional encoder capability: `encode(x)` → latent codes, or (mean, log-variance) for a VAE."""

    def encode(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]: ...


def latent_code(model: Encodes, images: Tensor) -> Tensor:
    """The point in latent space that stands for each image: the posterior mean when `encode` gives moments."""
    code = model.encode(images)
    return code[0] if isinstance(code, tuple) else code


def latent_path(start: Tensor, end: Tensor, steps: int) -> Tensor:
    """N x steps x D points evenly spaced on the segments start → end, both ends included."""
    t = torch.linspace(0, 1, steps, device=start.device, dtype=start.dtype)[None, :, None]
    return start[:, None] + t * (end - start)[:, None]


def decoded_path(model: GenerativeModule, start: Tensor, end: Tensor, steps: int,
                 labels: Tensor | None = None) -> Tensor:
    """N x steps x sample-shape decodes along `latent_path` (labels, one per row, for conditional models)."""
    path = latent_path(start, end, steps)
    n = path.shape[0]
    row_labels = labels.repeat_interleave(steps) if labels is not None else None
    images = model.decode(path.flatten(0, 1), row_labels)
    return images.view(n, steps, *images.shape[1:])


def choose_pairs(labels: Tensor, count: int, same: bool, generator: torch.Generator) -> tuple[Tensor, Tensor] | None:
    """`count` index pairs (a ≠ b) whose labels agree (`same`) or differ; None when no such pair exists.

    Each pair: a uniformly among the indices that have a partner, then b uniformly among a's partners.
    """
    labels = labels.cpu()
    firsts, seconds = [], []
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    per_image = counts[inverse]  # how many images share each image's label (itself included)
    has_partner = per_image >= 2 if same else per_image < len(labels)
    candidates = has_partner.nonzero().flatten()
    if candidates.numel() == 0:
        return None
    for _ in range(count):
        first = int(candidates[torch.randint(len(candidates), (1,), generator=generator)])
        partners = _partners(labels, first, same)
        firsts.append(first)
        seconds.append(int(partners[torch.randint(len(partners), (1,), generator=generator)]))
    return torch.tensor(firsts), torch.tensor(seconds)


def _partners(labels: Tensor, index: int, same: bool) -> Tensor:
    matches = labels == labels[index] if same else labels != labels[index]
    matches[index] = False
    return matches.nonzero().flatten()


def _all_test_data(trainer: L.Trainer) -> tuple[Tensor, Tensor]:
    datamodule = trainer.datamodule
    if datamodule is None:
        raise GenlabError("LatentInterpolation needs a data module with a test split: configure data:")
    images, labels = [], []
    for batch in datamodule.test_dataloader():
        images.append(batch[0])
        labels.append(batch[1] if len(batch) > 1 else torch.zeros(len(batch[0]), dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


class LatentInterpolation(L.Callback):
    """Draws the interpolation figures at the end of a fit and of a test run.

    Args:
        num_pairs: rows per figure (pairs of endpoints).
        num_interpolates: decoded points strictly between the endpoints (columns = num_interpolates + 2);
            they sit at t = k / (num_interpolates + 1), k = 1 … num_interpolates.
        seed: seeds the choice of test images (or noise vectors), so every run draws the same pairs.
        at_fit_end, at_test_end: when to draw.
    """

    def __init__(
        self,
        num_pairs: int = 10,
        num_interpolates: int = 7,
        seed: int = 0,
        at_fit_end: bool = True,
        at_test_end: bool = True,
    ) -> None:
        if num_pairs < 1 or num_interpolates < 0:
            raise GenlabError("LatentInterpolation num_pairs must be at least 1 and num_interpolates at least 0")
        self.num_pairs, self.num_interpolates, self.seed = num_pairs, num_interpolates, seed
        self.at_fit_end, self.at_test_end = at_fit_end, at_test_end

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, GenerativeModule):
            raise GenlabError(f"LatentInterpolation needs a generative model; {type(pl_module).__name__} cannot decode")
        if isinstance(pl_module, Encodes) and trainer.datamodule is None:
            raise GenlabError("LatentInterpolation interpolates between test images: configure a data module")

    @property
    def columns(self) -> int:
        return self.num_interpolates + 2

    def _grid(self, rows: Tensor) -> Tensor:
        return make_grid(to_unit_range(rows.flatten(0, 1)), nrow=self.columns, padding=2, pad_value=1.0)

    def encoded_rows(self, model: GenerativeModule, first: Tensor, last: Tensor) -> Tensor:
        """N x columns x C x H x W in [-1, 1]: the first image, the decoded interpolates, the last image."""
        model_encodes: Any = model
        path = decoded_path(model, latent_code(model_encodes, first), latent_code(model_encodes, last), self.columns)
        return torch.cat([first[:, None], path[:, 1:-1], last[:, None]], dim=1)

    def figures(self, model: GenerativeModule, images: Tensor | None = None,
                labels: Tensor | None = None, num_classes: int = 0) -> dict[str, Tensor]:
        """Figure name → CHW grid in [0, 1]. Encoding models need the test `images` (and `labels`)."""
        generator = torch.Generator().manual_seed(self.seed)
        with evaluation_mode(model):
            if not isinstance(model, Encodes):
                z = model.sample_latent(2 * self.num_pairs, generator=generator)
                row_labels = None
                if model.num_classes:
                    row_labels = torch.arange(self.num_pairs, device=model.device) % model.num_classes
                rows = decoded_path(model, z[: self.num_pairs], z[self.num_pairs :], self.columns, row_labels)
                return {"noise_pairs": self._grid(rows)}
            if images is None:
                raise GenlabError("LatentInterpolation: an encoding model needs test images")
            if labels is None or num_classes == 0:
                labels = torch.zeros(len(images), dtype=torch.long)
                kinds = {"random_pairs": True}
            else:
                kinds = {"same_class": True, "different_classes": False}
            result = {}
            for name, same in kinds.items():
                pairs = choose_pairs(labels, self.num_pairs, same, generator)
                if pairs is None:
                    rank_zero_warn(f"LatentInterpolation: the test split has no pairs for the {name} figure")
                    continue
                first, last = (images[index].to(model.device) for index in pairs)
                result[name] = self._grid(self.encoded_rows(model, first, last))
            return result

    @keeps_training_rng
    def draw(self, trainer: L.Trainer, model: GenerativeModule) -> list[Path]:
        """Compute the figures and (outside fast_dev_run) save and log them; returns the files written."""
        if not trainer.is_global_zero:
            return []
        images = labels = None
        num_classes = 0
        if isinstance(model, Encodes):
            images, labels = _all_test_data(trainer)
            num_classes = getattr(trainer.datamodule, "num_classes", 0) or 0
        figures = self.figures(model, images, labels, num_classes)
        written = [save_artifact(trainer, f"interpolation/{name}.png", image, f"interpolation/{name}",
                                 trainer.global_step) for name, image in figures.items()]
        return [path for path in written if path is not None]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_fit_end:
            self.draw(trainer, pl_module)  # type: ignore[arg-type]

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_test_end:
            self.draw(trainer, pl_module)  # type: ignore[arg-type]
