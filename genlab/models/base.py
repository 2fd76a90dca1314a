"""The sampling interface every generative model offers; callbacks talk to models through it alone.

`latent_dim`, `num_classes` (0 when unconditional), `sample_latent(n, generator)`, `decode(z, labels)` and
`sample(n, labels)`, which returns samples in the data's range (images in [-1, 1], NCHW; N x 2 for 2-D toy
data). A sample grid, a latent interpolation or an FID therefore works for every model alike. The training
machinery (resume, the guard against non-finite updates, saving) lives in `genlab.training`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from genlab.errors import GenlabError
from genlab.models.evaluation import evaluation_mode
from genlab.training import TrainingModule


class GenerativeModule(TrainingModule):
    """A model that can draw samples; see the module docstring for the interface callbacks rely on."""

    latent_dim: int
    num_classes: int = 0

    #: whether `genlab.precision` may choose bf16-mixed for this model where it is faster: only where bf16 runs
    #: were measured to score within the fp32 runs' seed-to-seed spread. Opt-in: a new model is fp32 until shown.
    automatic_bf16: bool = False

    def sampler_settings(self) -> dict[str, Any]:
        """What decides the samples besides the weights and the RNG seed (prior, BatchNorm mode, …), for records."""
        return {"latent_dim": self.latent_dim}

    def sampler_options(self) -> dict[str, tuple[str, str]]:
        """The ways this model can draw samples (e.g. the VAE's "mixture" prior, a GAN's EMA generator), which
        `GenerativeMetrics(samplers=[...])` scores beside the configured one under their own names: variant →
        (the constructor setting that chooses it, its value). None by default."""
        return {}

    @property
    def sampler_variants(self) -> tuple[str, ...]:
        return tuple(self.sampler_options())

    def scored_alongside(self) -> tuple[str, ...]:
        """Samplers every evaluation scores besides the configured one (none by default)."""
        return ()

    def check_sampler(self, variant: str) -> None:
        """One line when `variant` is not one of this model's samplers."""
        if variant not in self.sampler_variants:
            raise GenlabError(f"{type(self).__name__} has no sampler {variant!r}; it has"
                              f" {list(self.sampler_variants) or 'only its configured one'}")

    @contextmanager
    def sampler(self, variant: str | None = None) -> Iterator[None]:
        """Sample with `variant` (one of `sampler_variants`) for the duration; None keeps the configured sampler."""
        if variant is None:
            yield
            return
        self.check_sampler(variant)
        setting, value = self.sampler_options()[variant]
        configured = getattr(self, setting)
        setattr(self, setting, value)
        try:
            yield
        finally:
            setattr(self, setting, configured)

    def default_labels(self, n: int) -> Tensor | None:
        """Balanced labels 0, 1, …, C-1, 0, 1, … for conditional models; None otherwise."""
        if self.num_classes == 0:
            return None
        return torch.arange(n, device=self.device) % self.num_classes

    def timing_pass(self, n: int) -> Tensor:
        """A forward pass through every network one training iteration uses, on random inputs: what
        `genlab.precision` times (with its backward) in fp32 and in bf16 to choose the automatic precision."""
        return self.decode(torch.randn(n, self.latent_dim, device=self.device), self.default_labels(n))

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n samples in eval mode without gradients; labels default to balanced classes when conditional."""
        if labels is None:
            labels = self.default_labels(n)
        with evaluation_mode(self):
            return self.decode(self.sample_latent(n, generator), labels)

    #: seed of the samples `genlab predict` draws: test item i gets the latent drawn with seed + i, so any
    #: process count (DDP shards the items) and any batch size give the same image for the same item
    predict_seed: int = 0

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Nothing per batch: `genlab test` scores a generator through `GenerativeMetrics` at the epoch's end."""

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor | None]:
        """One generated image per planned item (batch: labels, item indices; `TensorDataModule.predict_dataloader`),
        with that item's label when the model is conditional, from the latent seeded by `predict_seed` + item."""
        if len(batch) != 2:
            raise GenlabError("genlab predict needs the (labels, item indices) batches a genlab data module's"
                              " predict_dataloader yields: use a genlab.data module")
        labels, items = batch
        labels = labels.to(self.device) if self.num_classes else None
        with evaluation_mode(self):
            latents = torch.cat([
                self.sample_latent(1, torch.Generator(device=self.device).manual_seed(self.predict_seed + int(item)))
                for item in items
            ])
            images = self.decode(latents, labels)
        return {"images": images, "labels": labels, "items": items}
