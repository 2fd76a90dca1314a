"""`Evaluation`: a generator's samples scored against real images by metric suites, with no trainer.

It is what `genlab.callbacks.GenerativeMetrics` runs at each scheduled evaluation, what `genlab doctor` prepares to
check a config, and what a notebook or benchmark calls on a model and a data module directly:

    evaluation = Evaluation([ClassifierMetrics("lightning_logs/classifier_mnist")], num_samples=10_000)
    evaluation.prepare(data, model, split="test")
    record = evaluation.run(data, model, split="test")      # record["scores"]["classifier/fd"], …

Every evaluation draws the same samples: the fake image with global index i comes from noise batch
i // batch_size, seeded `seed + batch index`, and processes take contiguous shares of those batches and of the
real images. The metrics gather their states in rank order, so N processes compute exactly the numbers one
process does on the same samples (a process whose share is empty still takes part in every gather).

A record carries everything its numbers rest on: the suites' settings (network, its checkpoint hash, splits, …),
the sampler (prior, BatchNorm mode), sampling seed, batch size, device, process count and precision, sample and
reference counts, and the real-data value of every score (real images of another split scored as if they were
generated: the IS ceiling, the FD floor).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from genlab.data.base import data_split
from genlab.errors import GenlabError
from genlab.metrics.suite import EvaluationPlan, MetricSuite
from genlab.models.base import GenerativeModule, evaluation_mode
from genlab.runtime import autocast_dtype


def share(count: int, rank: int, world_size: int) -> range:
    """This process's contiguous share of `count` items (shares differ in size by at most one)."""
    return range(count * rank // world_size, count * (rank + 1) // world_size)


def generated_batches(model: GenerativeModule, count: int, batch_size: int, seed: int, rank: int = 0,
                      world_size: int = 1) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Yields (images, requested labels or None) for this process's share of `count` seeded samples."""
    batches = math.ceil(count / batch_size)
    for batch in share(batches, rank, world_size):
        start, stop = batch * batch_size, min(count, (batch + 1) * batch_size)
        generator = torch.Generator(device=model.device).manual_seed(seed + batch)
        labels = None
        if model.num_classes:
            labels = torch.arange(start, stop, device=model.device) % model.num_classes
        yield model.sample(stop - start, labels, generator=generator), labels


def describe_data(datamodule: object) -> dict[str, Any] | None:
    """The data a record's real images come from (a genlab data module's `describe`), or None."""
    describe = getattr(datamodule, "describe", None)
    return describe() if callable(describe) else None


def sampling_precision(model: torch.nn.Module) -> str:
    """What samples are drawn in here, called where they are drawn: a callback runs outside the autocast Lightning
    puts around training steps, so a bf16-mixed fit samples in its weights' dtype (fp32), not "bf16-mixed"."""
    parameter = next(model.parameters())
    if (autocast := autocast_dtype(parameter.device.type)) is not None:
        return f"autocast {autocast}"
    dtype = parameter.dtype
    return {torch.float32: "32-true", torch.bfloat16: "bf16-true", torch.float16: "16-true",
            torch.float64: "64-true"}.get(dtype, str(dtype))


class Evaluation:
    """Scores `num_samples` samples of a model, and of each of its other samplers, with `suites`.

    Args:
        suites: the metric suites (`ClassifierMetrics`, `InceptionMetrics`, or a `MetricSuite` of one's own).
        num_samples: generated images per evaluation (10,000 is the convention for IS).
        num_real: real images per evaluation (default: as many as generated, or the whole split if smaller).
        batch_size: images per generator and metric forward pass (it also decides the samples of a generator
            whose BatchNorm uses batch statistics, so it is recorded).
        seed: seed of the generated samples (the same samples at every evaluation).
        samplers: other samplers of the model to score too (`[mixture]` for a VAE, `[batch]` for a BatchNorm GAN);
            their scores are named `<score>@<sampler>`, so no record can be mistaken for the configured sampler's.
        real_values: also score `num_samples` real images of another split as if generated, once per reference
            split: the real-data value of each score, in every record.

    The real images of a split are fed once and kept (the suites' `keep_real`) until another split is asked for.
    """

    def __init__(self, suites: list[MetricSuite], num_samples: int = 10_000, num_real: int | None = None,
                 batch_size: int = 500, seed: int = 0, samplers: list[str] | None = None,
                 real_values: bool = True) -> None:
        if not suites:
            raise GenlabError("an evaluation needs at least one suite (e.g. genlab.metrics.ClassifierMetrics)")
        if num_samples < 1 or batch_size < 1 or (num_real is not None and num_real < 1):
            raise GenlabError("num_samples, num_real and batch_size must be at least 1")
        self.suites, self.num_samples, self.num_real = list(suites), num_samples, num_real
        self.batch_size, self.seed = batch_size, seed
        self.samplers, self.real_values = list(samplers or []), real_values
        self.forget_real()

    def forget_real(self) -> None:
        """Feed the real side again at the next `run` (a new run, or data that changed)."""
        self.real_fed: str | None = None  # the split whose images the suites keep across evaluations
        self.real_count = 0
        self.real_value_cache: dict[str, dict[str, Any] | None] = {}

    # --- planning -----------------------------------------------------------------------------------------

    def real_images(self, datamodule: Any, split: str) -> Tensor:
        images = data_split(datamodule, split, "GenerativeMetrics").samples
        if len(images) == 0:
            raise GenlabError(f"GenerativeMetrics: the data's {split} split is empty: set real_split to another"
                              " split (e.g. train)")
        return images[: self.num_real or self.num_samples]

    def plan(self, datamodule: Any, model: GenerativeModule, split: str, num_real: int | None = None
             ) -> EvaluationPlan:
        """What the suites are told before scoring (they refuse what cannot work, e.g. too few samples); `num_real`
        defaults to the count `split` will give."""
        return EvaluationPlan(
            data_shape=tuple(getattr(datamodule, "data_shape", ())),
            data_name=type(datamodule).__name__,
            data_classes=int(getattr(datamodule, "num_classes", 0)),
            model_classes=int(model.num_classes),
            num_fake=self.num_samples,
            num_real=len(self.real_images(datamodule, split)) if num_real is None else num_real,
            real_split=split,
        )

    def prepare(self, datamodule: Any, model: GenerativeModule, split: str, num_real: int | None = None) -> None:
        """Load every suite's network and check the plan and the samplers, before anything slow runs."""
        plan = self.plan(datamodule, model, split, num_real)
        for suite in self.suites:
            suite.prepare(plan)
        for variant in self.variants(model):
            model.check_sampler(variant)
        self.forget_real()

    def variants(self, model: GenerativeModule) -> list[str]:
        """The samplers scored besides the configured one: `samplers`, and those the model always has scored
        alongside (a GAN's moving-average generator, or its raw one when it samples from the average)."""
        return [*self.samplers, *(v for v in model.scored_alongside() if v not in self.samplers)]

    # --- scoring ------------------------------------------------------------------------------------------

    def feed(self, images: Tensor, labels: Tensor | None, real: bool, device: torch.device, rank: int = 0,
             world_size: int = 1) -> None:
        """This process's contiguous share of the batches of `images` to every suite.

        Shares are whole batches cut from global index 0, as for generated samples, so every image goes through the
        feature network in the same batch on any number of processes: some CPU kernels round differently for
        different batch shapes, which moved a Fréchet distance in its 8th digit when the real side was shared
        image by image."""
        for batch in share(math.ceil(len(images) / self.batch_size), rank, world_size):
            start, stop = batch * self.batch_size, min(len(images), (batch + 1) * self.batch_size)
            batch_labels = labels[start:stop].to(device) if labels is not None else None
            for suite in self.suites:
                suite.update(images[start:stop].to(device), real=real, labels=batch_labels)

    def compute(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Every suite's scores and other outputs; the generated side is then forgotten, the real side kept."""
        scores: dict[str, float] = {}
        extras: dict[str, Any] = {}
        for suite in self.suites:
            result = suite.compute()
            scores |= result.scores
            extras |= result.extras
            suite.reset(keep_real=True)
        return scores, extras

    @torch.no_grad()
    def feed_real(self, datamodule: Any, model: GenerativeModule, split: str, rank: int = 0,
                  world_size: int = 1) -> None:
        """The real images of `split` to every suite, once (kept across evaluations until the split changes)."""
        for suite in self.suites:
            suite.to(model.device)
        if self.real_fed == split:
            return
        for suite in self.suites:
            suite.reset(keep_real=False)
        real = self.real_images(datamodule, split)
        self.real_count = len(real)
        # a conditional model's per-class scores compare class c's samples with class c's real images
        labels = data_split(datamodule, split, "GenerativeMetrics").labels[: len(real)]
        self.feed(real, labels if model.num_classes else None, True, model.device, rank, world_size)
        self.real_fed = split

    def real_data_values(self, datamodule: Any, model: GenerativeModule, split: str, rank: int = 0,
                         world_size: int = 1) -> dict[str, Any] | None:
        """Real images of another split scored as generated ones, once per reference split (they never change)."""
        if not self.real_values:
            return None
        if split not in self.real_value_cache:
            baseline = next((name for name in ("train", "test", "val")
                             if name != split and len(data_split(datamodule, name, "GenerativeMetrics").samples)), None)
            if baseline is None:
                self.real_value_cache[split] = {"split": None, "note": "the data has no second split to compare"}
            else:
                data = data_split(datamodule, baseline, "GenerativeMetrics")
                images, labels = data.samples[: self.num_samples], data.labels[: self.num_samples]
                self.feed(images, labels if model.num_classes else None, False, model.device, rank, world_size)
                scores, _ = self.compute()
                self.real_value_cache[split] = {"split": baseline, "count": len(images), "scores": scores}
        return self.real_value_cache[split]

    @torch.no_grad()
    def score_sampler(self, model: GenerativeModule, variant: str | None, real_scores: dict[str, float] | None,
                      rank: int = 0, world_size: int = 1) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
        """Scores, extras and sampler settings of `num_samples` samples drawn with `variant` (None: as configured)."""
        with model.sampler(variant):
            with evaluation_mode(model):
                for images, labels in generated_batches(model, self.num_samples, self.batch_size, self.seed, rank,
                                                        world_size):
                    for suite in self.suites:
                        suite.update(images, real=False, labels=labels)
            settings = model.sampler_settings()  # after sampling: a prior fitted on demand says when
        scores, extras = self.compute()
        if real_scores:
            for suite in self.suites:
                scores |= suite.relative_to_real(scores, real_scores)
        return scores, extras, settings

    @torch.no_grad()
    def run(self, datamodule: Any, model: GenerativeModule, split: str, rank: int = 0, world_size: int = 1
            ) -> dict[str, Any]:
        """Real and generated images through every suite on this process; the record (scores, extras, protocol).
        Under DDP every process calls it with its rank; the scores are then the same on each."""
        self.feed_real(datamodule, model, split, rank, world_size)
        real_values = self.real_data_values(datamodule, model, split, rank, world_size)
        scores: dict[str, float] = {}
        extras: dict[str, Any] = {}
        samplers: dict[str, Any] = {}
        for variant in [None, *self.variants(model)]:
            suffix = f"@{variant}" if variant else ""
            variant_scores, variant_extras, samplers[variant or "configured"] = self.score_sampler(
                model, variant, (real_values or {}).get("scores"), rank, world_size)
            scores |= {f"{name}{suffix}": value for name, value in variant_scores.items()}
            extras |= {f"{name}{suffix}": value for name, value in variant_extras.items()}
        return {
            "real_split": split, "num_fake": self.num_samples, "num_real": self.real_count,
            "data": describe_data(datamodule),
            "scores": scores, **extras,
            "real_values": real_values,
            "sampling": {
                "samplers": samplers, "seed": self.seed, "batch_size": self.batch_size,
                "noise_batches": f"batch b of {self.batch_size} drawn with torch.Generator seeded seed + b",
                "device": str(model.device), "processes": world_size, "precision": sampling_precision(model),
            },
            "settings": {suite.name: suite.settings() for suite in self.suites},
        }
