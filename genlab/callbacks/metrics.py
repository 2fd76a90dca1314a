"""`GenerativeMetrics`: IS/FID/KID and classifier scores of generated samples, during training and in `genlab test`.

The scoring itself is `genlab.evaluation.Evaluation` (usable without a trainer); this callback decides when it
runs (the schedule of `ScheduledEvaluation`, and once in `genlab test`), and writes, logs and watches its records:
one JSON object per evaluation in `metrics.jsonl`, the scores in TensorBoard, a label histogram image, alarms.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from torch import Tensor

from genlab import run_layout
from genlab.atomic_files import append_jsonl
from genlab.callbacks.alarms import ScoreAlarm, sound_alarms
from genlab.callbacks.run_files import figure_to_image, run_dir, save_artifact
from genlab.callbacks.schedule import ScheduledEvaluation
from genlab.errors import GenlabError
from genlab.evaluation import Evaluation
from genlab.metrics.suite import MetricSuite
from genlab.models.base import GenerativeModule
from genlab.rng import keeps_training_rng
from genlab.runtime import iterations_done

SplitName = Literal["train", "val", "test"]


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
        if every_n_epochs < 0:
            raise GenlabError("GenerativeMetrics every_n_epochs must be 0 (only at the end) or more")
        try:
            self.evaluation = Evaluation(suites, num_samples, num_real, batch_size, seed, samplers, real_values)
        except GenlabError as error:
            raise GenlabError(f"GenerativeMetrics: {error}") from None
        self.real_split, self.every_n_epochs = real_split, every_n_epochs
        self.alarms, self.stop_on_alarm = list(alarms or []), stop_on_alarm
        for alarm in self.alarms:
            alarm.check()
        self._last_iteration = -1
        self.results: list[dict[str, Any]] = []

    @keeps_training_rng
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.evaluates_in(trainer, pl_module, stage):
            # before training, not at the first evaluation
            self.evaluation.prepare(trainer.datamodule, pl_module, "test" if stage == "test" else self.real_split)

    def evaluate(self, trainer: L.Trainer, model: GenerativeModule, split: str, stage: str) -> dict[str, Any]:
        """The evaluation on every process (each scores its share); returns the record with the run's place in it."""
        scored = self.evaluation.run(trainer.datamodule, model, split, trainer.global_rank, trainer.world_size)
        # the weights' precisions so far; during a fit, the one training them now too
        fit = stage == "fit"
        trained_in = model.precisions_trained_in(str(trainer.precision)) if fit else model.training_precisions
        return {
            # in `genlab test` the loops start at 0: the iteration is that of the checkpoint's weights
            "iteration": iterations_done(trainer) if stage == "fit" else int(getattr(model, "trained_iterations", 0)),
            "step": trainer.global_step, "epoch": trainer.current_epoch, "stage": stage,
            "trained_in_precision": trained_in,
            "trained_with_fast_paths": model.fast_paths_trained_in() if fit else model.training_fast_paths,
            # this run's precision, layout and TF32 and why (genlab.precision), when the CLI chose them
            "fast_path": getattr(model, "fast_path", None),
            **scored,
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
