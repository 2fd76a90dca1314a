"""`GenerativeMetrics`: IS/FID/KID and classifier scores of generated samples, during training and in `genlab test`.

Every evaluation draws the same samples: the fake image with global index i comes from noise batch
i // batch_size, seeded `seed + batch index`, and processes take contiguous shares of those batches and of the
real images. The metrics gather their states in rank order, so N processes compute exactly the numbers one
process does on the same samples (a process whose share is empty still takes part in every gather).

Each record in `metrics.jsonl` carries everything its numbers rest on: the suites' settings (network, its
checkpoint hash, splits, …), the sampler (prior, BatchNorm mode), sampling seed, batch size, device, process
count and precision, sample and reference counts, and the real-data value of every score (real images of
another split scored as if they were generated: the IS ceiling, the FD floor).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from genlab import run_layout
from genlab.atomic_files import append_jsonl
from genlab.callbacks.alarms import ScoreAlarm, sound_alarms
from genlab.callbacks.run_files import figure_to_image, run_dir, save_artifact
from genlab.callbacks.schedule import ScheduledEvaluation
from genlab.data.base import data_split
from genlab.errors import GenlabError
from genlab.metrics.suite import EvaluationPlan, MetricSuite
from genlab.models.base import GenerativeModule, evaluation_mode
from genlab.rng import keeps_training_rng
from genlab.runtime import autocast_dtype, iterations_done

SplitName = Literal["train", "val", "test"]


def share(count: int, rank: int, world_size: int) -> range:
    """This process's contiguous share of `count` items (shares differ in size by at most one)."""
    return range(count * rank // world_size, count * (rank + 1) // world_size)


def generated_batches(model: GenerativeModule, count: int, batch_size: int, seed: int, rank: int = 0,
                      world_size: int = 1):
    """Yields (images, requested labels or None) for this process's share of `count` seeded samples."""
    batches = math.ceil(count / batch_size)
    for batch in share(batches, rank, world_size):
        start, stop = batch * batch_size, min(count, (batch + 1) * batch_size)
        generator = torch.Generator(device=model.device).manual_seed(seed + batch)
        labels = None
        if model.num_classes:
            labels = torch.arange(start, stop, device=model.device) % model.num_classes
        yield model.sample(stop - start, labels, generator=generator), labels


def draw_label_histogram(histogram: dict[str, Any], title: str, per_class: dict[str, list[float]] | None = None
                         ) -> Tensor:
    """Bar chart of predicted labels (generated vs real), plus requested-vs-predicted counts and the per-class
    label accuracy and Fréchet distance when conditional; returns a CHW float image in [0, 1]."""
    import numpy as np
    from matplotlib.figure import Figure

    generated, real = np.asarray(histogram["generated"], float), np.asarray(histogram["real"], float)
    joint = histogram.get("requested_vs_predicted")
    panels = 1 + (joint is not None) + (per_class is not None)
    figure = Figure(figsize=(5.5 * panels, 3.6), dpi=100, layout="tight")
    axes = figure.subplots(1, panels, squeeze=False)
    classes = np.arange(len(generated))
    axis = axes[0, 0]
    axis.bar(classes - 0.2, generated / max(generated.sum(), 1), 0.4, label="generated")
    axis.bar(classes + 0.2, real / max(real.sum(), 1), 0.4, label="real")
    axis.set(xticks=classes, xlabel="predicted label", ylabel="fraction", title=title)
    axis.legend()
    if joint is not None:
        axis = axes[0, 1]
        matrix = np.asarray(joint, float)
        axis.imshow(matrix / np.maximum(matrix.sum(1, keepdims=True), 1), cmap="viridis", vmin=0, vmax=1)
        axis.set(xticks=classes, yticks=classes, xlabel="predicted label", ylabel="requested label",
                 title="requested vs predicted (row-normalised)")
    if per_class is not None:
        axis = axes[0, panels - 1]
        axis.bar(classes - 0.2, per_class["label_accuracy"], 0.4, color="tab:green")
        axis.set(xticks=classes, xlabel="requested label", ylabel="label accuracy (green)", ylim=(0, 1),
                 title="per class")
        distances = axis.twinx()
        distances.bar(classes + 0.2, per_class["fd"], 0.4, color="tab:red")
        distances.set(ylabel="Fréchet distance to the class's real images (red)")
    return figure_to_image(figure)


def describe_data(datamodule: object) -> dict[str, Any] | None:
    """The data a record's real images come from (a genlab data module's `describe`), or None."""
    describe = getattr(datamodule, "describe", None)
    return describe() if callable(describe) else None


class GenerativeMetrics(ScheduledEvaluation):
    """Scores generated samples against real ones with metric suites (`ClassifierMetrics`, `InceptionMetrics`).

    During `fit`: every `every_n_epochs` epochs (0: only at the end) and at the end of training, against the
    `real_split` images. During `test` (`genlab test --ckpt_path ...`): once, against the test split; the scores
    then appear in Lightning's results table. Each evaluation logs the scores to TensorBoard, appends one JSON
    object to `<run folder>/metrics.jsonl` and, for classifier suites, saves a label-histogram image.
    Every setting a score depends on is checked in `setup`, so a missing classifier or weights file, or too
    few samples, stops the run before the first training step. Smoke tests (`fast_dev_run`) skip it.

    Args:
        suites: the metric suites.
        num_samples: generated images per evaluation (10,000 is the convention for IS).
        num_real: real images per evaluation (default: as many as generated, or the whole split if smaller).
        real_split: the split real images come from during fit ("train" for a data set without a val split).
        every_n_epochs: epochs between evaluations during fit; 0 evaluates only at the end.
        batch_size: images per generator and metric forward pass (it also decides the samples of a generator
            whose BatchNorm uses batch statistics, so it is recorded).
        seed: seed of the generated samples (the same samples at every evaluation).
        samplers: other samplers of the model to score in the same evaluation, e.g. `[mixture]` for a VAE or
            `[batch]` for a BatchNorm GAN; their scores are named `<score>@<sampler>` (`classifier/is@mixture`),
            so no record can be mistaken for the configured sampler's.
        real_values: also score `num_samples` real images of another split (train, or test when the reference
            split is train) as if generated, once per run: the real-data value of each score, in every record.
        alarms: thresholds watched during fit, e.g. `{score: classifier/recall, below: 0.2}`; one that is crossed
            prints one warning line with the iteration and the score, logs `alarm/<score>` and goes in the record.
        stop_on_alarm: also stop training (after the epoch, with the usual checkpoint) when an alarm sounds.
    """

    def __init__(
        self,
        suites: list[MetricSuite],
        num_samples: int = 10_000,
        num_real: int | None = None,
        real_split: SplitName = "val",
        every_n_epochs: int = 1,
        batch_size: int = 500,
        seed: int = 0,
        samplers: list[str] | None = None,
        real_values: bool = True,
        alarms: list[ScoreAlarm] | None = None,
        stop_on_alarm: bool = False,
    ) -> None:
        if not suites:
            raise GenlabError("GenerativeMetrics needs at least one suite (e.g. genlab.metrics.ClassifierMetrics)")
        if num_samples < 1 or batch_size < 1 or every_n_epochs < 0 or (num_real is not None and num_real < 1):
            raise GenlabError("GenerativeMetrics num_samples, num_real and batch_size must be at least 1,"
                              " every_n_epochs 0 or more")
        self.suites, self.num_samples, self.num_real = list(suites), num_samples, num_real
        self.real_split, self.every_n_epochs, self.batch_size, self.seed = real_split, every_n_epochs, batch_size, seed
        self.samplers, self.real_values = list(samplers or []), real_values
        self.alarms, self.stop_on_alarm = list(alarms or []), stop_on_alarm
        for alarm in self.alarms:
            alarm.check()
        self._real_value_cache: dict[str, dict[str, Any] | None] = {}
        self._real_fed: str | None = None  # the split whose images the suites keep across evaluations
        self._real_count = 0  # how many real images the suites hold
        self._last_iteration = -1
        self.results: list[dict[str, Any]] = []

    # --- planning -----------------------------------------------------------------------------------------

    def _real_images(self, trainer: L.Trainer, split: str) -> Tensor:
        images = data_split(trainer.datamodule, split, "GenerativeMetrics").samples
        if len(images) == 0:
            raise GenlabError(f"GenerativeMetrics: the data's {split} split is empty: set real_split to another"
                              " split (e.g. train)")
        return images[: self.num_real or self.num_samples]

    def _baseline_split(self, trainer: L.Trainer, split: str) -> str | None:
        """The split whose images stand in for samples in the real-data values: another split than the reference."""
        return next((name for name in ("train", "test", "val")
                     if name != split and len(data_split(trainer.datamodule, name, "GenerativeMetrics").samples)), None)

    def evaluation_plan(self, datamodule: Any, model: GenerativeModule, split: str, num_real: int) -> EvaluationPlan:
        """What the suites are told before scoring (they refuse what cannot work, e.g. too few samples)."""
        return EvaluationPlan(
            data_shape=tuple(getattr(datamodule, "data_shape", ())),
            data_name=type(datamodule).__name__,
            data_classes=int(getattr(datamodule, "num_classes", 0)),
            model_classes=int(model.num_classes),
            num_fake=self.num_samples,
            num_real=num_real,
            real_split=split,
        )

    @keeps_training_rng
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.evaluates_in(trainer, pl_module, stage):
            return
        split = "test" if stage == "test" else self.real_split
        plan = self.evaluation_plan(trainer.datamodule, pl_module, split, len(self._real_images(trainer, split)))
        for suite in self.suites:
            suite.prepare(plan)
        for variant in self.variants(pl_module):
            pl_module.check_sampler(variant)  # before training, not at the first evaluation
        self._real_fed = None
        self._real_value_cache = {}

    def variants(self, model: GenerativeModule) -> list[str]:
        """The samplers scored besides the configured one: `samplers`, and those the model always has scored
        alongside (a GAN's moving-average generator, or its raw one when it samples from the average)."""
        return [*self.samplers, *(v for v in model.scored_alongside() if v not in self.samplers)]

    # --- evaluation ---------------------------------------------------------------------------------------

    def _feed(self, images: Tensor, labels: Tensor | None, real: bool, rank: int, world_size: int,
              device: torch.device) -> None:
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

    def _compute(self) -> tuple[dict[str, float], dict[str, Any]]:
        scores: dict[str, float] = {}
        extras: dict[str, Any] = {}
        for suite in self.suites:
            result = suite.compute()
            scores |= result.scores
            extras |= result.extras
            suite.reset(keep_real=True)
        return scores, extras

    def _real_values(self, trainer: L.Trainer, model: GenerativeModule, split: str) -> dict[str, Any] | None:
        """Real images of another split scored as generated ones, once per reference split (they never change)."""
        if not self.real_values:
            return None
        if split not in self._real_value_cache:
            baseline = self._baseline_split(trainer, split)
            if baseline is None:
                self._real_value_cache[split] = {"split": None, "note": "the data has no second split to compare"}
            else:
                data = data_split(trainer.datamodule, baseline, "GenerativeMetrics")
                images, labels = data.samples[: self.num_samples], data.labels[: self.num_samples]
                self._feed(images, labels if model.num_classes else None, False, trainer.global_rank,
                           trainer.world_size, model.device)
                scores, _ = self._compute()
                self._real_value_cache[split] = {"split": baseline, "count": len(images), "scores": scores}
        return self._real_value_cache[split]

    def _score_sampler(self, trainer: L.Trainer, model: GenerativeModule, variant: str | None,
                       real_scores: dict[str, float] | None) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
        """Scores, extras and sampler settings of `num_samples` samples drawn with `variant` (None: as configured)."""
        with model.sampler(variant):
            with evaluation_mode(model):
                for images, labels in generated_batches(model, self.num_samples, self.batch_size, self.seed,
                                                        trainer.global_rank, trainer.world_size):
                    for suite in self.suites:
                        suite.update(images, real=False, labels=labels)
            settings = model.sampler_settings()  # after sampling: a prior fitted on demand says when
        scores, extras = self._compute()
        if real_scores:
            for suite in self.suites:
                scores |= suite.relative_to_real(scores, real_scores)
        return scores, extras, settings

    @torch.no_grad()
    def _feed_real(self, trainer: L.Trainer, model: GenerativeModule, split: str) -> None:
        """The real images of `split` to every suite, once (kept across evaluations until the split changes)."""
        for suite in self.suites:
            suite.to(model.device)
        if self._real_fed == split:
            return
        for suite in self.suites:
            suite.reset(keep_real=False)
        real = self._real_images(trainer, split)
        self._real_count = len(real)
        # a conditional model's per-class scores compare class c's samples with class c's real images
        labels = data_split(trainer.datamodule, split, "GenerativeMetrics").labels[: len(real)]
        self._feed(real, labels if model.num_classes else None, True, trainer.global_rank, trainer.world_size,
                   model.device)
        self._real_fed = split

    def evaluate(self, trainer: L.Trainer, model: GenerativeModule, split: str, stage: str) -> dict[str, Any]:
        """Feed real and generated images to every suite on every process; returns the record (scores, extras)."""
        world_size = trainer.world_size
        self._feed_real(trainer, model, split)
        real_values = self._real_values(trainer, model, split)
        scores: dict[str, float] = {}
        extras: dict[str, Any] = {}
        samplers: dict[str, Any] = {}
        for variant in [None, *self.variants(model)]:
            suffix = f"@{variant}" if variant else ""
            variant_scores, variant_extras, samplers[variant or "configured"] = self._score_sampler(
                trainer, model, variant, (real_values or {}).get("scores"))
            scores |= {f"{name}{suffix}": value for name, value in variant_scores.items()}
            extras |= {f"{name}{suffix}": value for name, value in variant_extras.items()}
        # the weights' precisions so far; during a fit, the one training them now too
        current = str(trainer.precision)
        trained_in = model.precisions_trained_in(current) if stage == "fit" else model.training_precisions
        return {
            # in `genlab test` the loops start at 0: the iteration is that of the checkpoint's weights
            "iteration": iterations_done(trainer) if stage == "fit" else int(getattr(model, "trained_iterations", 0)),
            "step": trainer.global_step, "epoch": trainer.current_epoch,
            "stage": stage, "real_split": split, "trained_in_precision": trained_in,
            # this run's precision, layout and TF32 and why (genlab.precision), when the CLI chose them
            "fast_path": getattr(model, "fast_path", None),
            "num_fake": self.num_samples, "num_real": self._real_count,
            "data": describe_data(trainer.datamodule),
            "scores": scores, **extras,
            "real_values": real_values,
            "sampling": {
                "samplers": samplers, "seed": self.seed, "batch_size": self.batch_size,
                "noise_batches": f"batch b of {self.batch_size} drawn with torch.Generator seeded seed + b",
                "device": str(model.device), "processes": world_size, "precision": sampling_precision(model),
            },
            "settings": {suite.name: suite.settings() for suite in self.suites},
        }

    def _write(self, trainer: L.Trainer, record: dict[str, Any]) -> None:
        self.results.append(record)
        if not trainer.is_global_zero:
            return
        folder = run_dir(trainer)
        append_jsonl(folder / run_layout.SCORE_RECORDS, record)
        if "label_histogram" in record:
            stage, iteration = record["stage"], record["iteration"]
            per_class = next((value for key, value in record.items() if key.endswith("/per_class")), None)
            image = draw_label_histogram(record["label_histogram"], f"{stage} · iteration {iteration}", per_class)
            save_artifact(trainer, f"metrics/label_histogram-{stage}-iteration_{iteration:07d}.png", image,
                          f"label_histogram/{stage}", iteration)

    def evaluate_during_fit(self, trainer: L.Trainer, model: GenerativeModule, iteration: int) -> None:
        record = self.evaluate(trainer, model, self.real_split, "fit")
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(record["scores"], step=iteration)
        if self.alarms:
            record["alarms"] = sound_alarms(trainer, self.alarms, record["scores"], iteration, self.stop_on_alarm)
        self._write(trainer, record)

    @keeps_training_rng
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        record = self.evaluate(trainer, pl_module, "test", "test")  # type: ignore[arg-type]
        for name, value in record["scores"].items():
            pl_module.log(f"test/{name}", value, sync_dist=False)  # equal on every process after compute
        self._write(trainer, record)


def sampling_precision(model: torch.nn.Module) -> str:
    """What samples are drawn in here, called where they are drawn: a callback runs outside the autocast Lightning
    puts around training steps, so a bf16-mixed fit samples in its weights' dtype (fp32), not "bf16-mixed"."""
    parameter = next(model.parameters())
    if (autocast := autocast_dtype(parameter.device.type)) is not None:
        return f"autocast {autocast}"
    dtype = parameter.dtype
    return {torch.float32: "32-true", torch.bfloat16: "bf16-true", torch.float16: "16-true",
            torch.float64: "64-true"}.get(dtype, str(dtype))
