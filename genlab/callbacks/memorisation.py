"""`Memorisation`: how close generated samples come to training images, against held-out real images.

It uses only the sampling interface (`model.sample`, through `generated_batches`'s seeded noise batches) and the
data module's splits. The numbers and why a median ratio are in `genlab.metrics.memorisation`. Rank 0 alone
draws and scores (no collective calls, so the other processes of a DDP run need not wait for it).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor
from torchvision.utils import make_grid

from genlab import run_layout
from genlab.atomic_files import append_jsonl
from genlab.callbacks.run_files import run_dir, save_artifact, to_unit_range
from genlab.callbacks.schedule import ScheduledEvaluation
from genlab.data.base import data_split
from genlab.errors import GenlabError
from genlab.evaluation import generated_batches
from genlab.metrics.classifier_checkpoint import LoadedClassifier, load_classifier
from genlab.metrics.memorisation import NearestTraining, memorisation_scores, nearest_training
from genlab.models.base import GenerativeModule, evaluation_mode
from genlab.rng import keeps_training_rng
from genlab.runtime import iterations_done


class Memorisation(ScheduledEvaluation):
    """Nearest-training-image distances of `num_samples` samples in pixel space (and in a classifier's
    penultimate features when `classifier` is set), at the end of fit, every `every_n_epochs` epochs, and in
    `genlab test`.

    Each evaluation appends one record to `<run>/memorisation.jsonl` and logs `memorisation/<space>_ratio`,
    `_median`, `_min` and `_held_out_median` to the loggers; `ratio` = median distance of samples / median
    distance of held-out real images (≈ 1: new images; ≪ 1: copies). It saves the `num_pairs` closest
    sample / training-image pairs of each space as `<run>/memorisation/closest_pairs_<space>-…png` (samples on
    top, their nearest training images below) and logs them to TensorBoard.

    Args:
        num_samples: generated images, and at most as many held-out images.
        num_train: training images searched (the first ones of the split; None: all of them).
        held_out_split: real images never trained on; None takes val, or test when val is empty.
        classifier: a genlab classifier checkpoint (or folder) whose features form the second space; None: pixels only.
        every_n_epochs: epochs between evaluations during fit; 0: only at the end.
        batch_size: images per generator and classifier forward pass.
        seed: seed of the samples (batch b drawn with seed + b, as `GenerativeMetrics`).
        num_pairs: closest pairs shown.
    """

    def __init__(self, num_samples: int = 1000, num_train: int | None = None,
                 held_out_split: Literal["val", "test"] | None = None, classifier: str | None = None,
                 every_n_epochs: int = 0, batch_size: int = 500, seed: int = 0, num_pairs: int = 8) -> None:
        if (min(num_samples, batch_size, num_pairs) < 1 or every_n_epochs < 0
                or (num_train is not None and num_train < 1)):
            raise GenlabError("Memorisation num_samples, num_train, batch_size and num_pairs must be at least 1,"
                              " every_n_epochs 0 or more")
        self.num_samples, self.num_train, self.held_out_split = num_samples, num_train, held_out_split
        self.classifier_path, self.every_n_epochs, self.batch_size = classifier, every_n_epochs, batch_size
        self.seed, self.num_pairs = seed, num_pairs
        self.classifier: LoadedClassifier | None = None
        self._reference_key: tuple[int, ...] | None = None
        self._reference_cache: tuple[dict[str, Tensor], dict[str, NearestTraining]] = ({}, {})
        self._last_iteration = -1

    # --- data -------------------------------------------------------------------------------------------------

    def _real(self, trainer: L.Trainer) -> tuple[Tensor, Tensor, str]:
        """(training images, held-out images, held-out split name), with one line for what is missing."""
        def split(name: str) -> Tensor:
            return data_split(trainer.datamodule, name, "Memorisation").samples

        train = split("train")
        if train.dim() != 4:
            raise GenlabError("Memorisation compares images, but the data's samples have shape"
                              f" {tuple(train.shape[1:])}")
        held = self.held_out_split or ("val" if len(split("val")) else "test")
        held_out = split(held)[: self.num_samples]
        if len(held_out) == 0 or len(train) == 0:
            raise GenlabError(f"Memorisation: the data's {'train' if len(held_out) else held} split is empty: set"
                              " held_out_split to a split that holds images")
        return train[: self.num_train], held_out, held

    @keeps_training_rng
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.evaluates_in(trainer, pl_module, stage):
            return
        train, _, _ = self._real(trainer)  # refused before training, not after it
        if self.classifier_path and self.classifier is None:
            self.classifier = load_classifier(self.classifier_path)
            shape = tuple(self.classifier.network.in_shape)
            if shape != tuple(train.shape[1:]):
                raise GenlabError(f"the classifier {self.classifier.path} reads images of shape {shape} but the data"
                                  f" gives {tuple(train.shape[1:])}: point classifier at one trained on this data")

    # --- scoring ----------------------------------------------------------------------------------------------

    def _spaces(self, images: Tensor, device: torch.device) -> dict[str, Tensor]:
        """The images as points of each space: flattened pixels, and classifier features if configured."""
        spaces = {"pixel": images.flatten(1)}
        if self.classifier is not None:
            network = self.classifier.network.to(device)
            spaces["feature"] = torch.cat([network.logits_and_features(batch.to(device).float())[1].cpu()
                                           for batch in images.split(self.batch_size)])
        return spaces

    def score(self, samples: Tensor, train: Tensor, held_out: Tensor,
              device: torch.device | None = None) -> tuple[dict[str, float], dict[str, NearestTraining]]:
        """Scores named `memorisation/<space>_<name>` and each space's nearest training images of the samples."""
        device = device or torch.device("cpu")
        train_points, held_out_nearest = self._reference(train, held_out, device)
        scores: dict[str, float] = {}
        nearest: dict[str, NearestTraining] = {}
        for space, points in self._spaces(samples, device).items():
            nearest[space] = nearest_training(points, train_points[space])
            values = memorisation_scores(nearest[space], held_out_nearest[space])
            scores |= {f"memorisation/{space}_{name}": value for name, value in values.items()}
        return scores, nearest

    def _reference(self, train: Tensor, held_out: Tensor,
                   device: torch.device) -> tuple[dict[str, Tensor], dict[str, NearestTraining]]:
        """Training points and held-out nearest distances per space, computed once: the real images never change."""
        key = (train.data_ptr(), len(train), held_out.data_ptr(), len(held_out))
        if self._reference_key != key:
            train_points, held_out_points = self._spaces(train, device), self._spaces(held_out, device)
            held_out_nearest = {space: nearest_training(points, train_points[space])
                                for space, points in held_out_points.items()}
            self._reference_cache, self._reference_key = (train_points, held_out_nearest), key
        return self._reference_cache

    def closest_pairs(self, samples: Tensor, train: Tensor, nearest: NearestTraining) -> Tensor:
        """A CHW image in [0, 1]: the closest samples (top row) above their nearest training images."""
        order = nearest.distances.argsort()[: self.num_pairs]
        pairs = torch.cat([samples[order].cpu(), train[nearest.indices[order]].cpu()])
        return make_grid(to_unit_range(pairs), nrow=len(order), padding=2, pad_value=1.0)

    def _samples(self, model: GenerativeModule) -> Tensor:
        with evaluation_mode(model):
            return torch.cat([images.cpu() for images, _ in
                              generated_batches(model, self.num_samples, self.batch_size, self.seed)])

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, model: GenerativeModule, stage: str) -> dict[str, Any] | None:
        """Draw, score, write the record and the figures (rank 0 only); returns the record."""
        if not trainer.is_global_zero:
            return None
        train, held_out, held = self._real(trainer)
        samples = self._samples(model)
        scores, nearest = self.score(samples, train, held_out, model.device)
        iteration = iterations_done(trainer) if stage == "fit" else int(getattr(model, "trained_iterations", 0))
        record = {"iteration": iteration, "stage": stage, "scores": scores, "settings": self.settings(
            len(samples), len(train), len(held_out), held), "sampler": model.sampler_settings()}
        append_jsonl(run_dir(trainer) / run_layout.MEMORISATION_RECORDS, record)
        for logger in trainer.loggers:
            logger.log_metrics(scores, step=iteration)
        for space, found in nearest.items():
            save_artifact(trainer, f"memorisation/closest_pairs_{space}-{stage}-iteration_{iteration:07d}.png",
                          self.closest_pairs(samples, train, found), f"memorisation/closest_pairs_{space}/{stage}",
                          iteration)
        return record

    def settings(self, num_samples: int, num_train: int, num_held_out: int, held: str) -> dict[str, Any]:
        loaded = self.classifier
        return {
            "num_samples": num_samples, "num_train": num_train, "num_held_out": num_held_out, "held_out_split": held,
            "seed": self.seed, "batch_size": self.batch_size,
            "distance": "Euclidean, float64; pixel: images in [-1, 1] flattened; feature: the classifier's"
                        " penultimate features",
            "ratio": "median nearest-training distance of samples / that of held-out real images",
            "classifier": os.fspath(loaded.path) if loaded else None,
            "classifier_sha256": loaded.sha256 if loaded else None,
        }

    # --- hooks ------------------------------------------------------------------------------------------------

    def evaluate_during_fit(self, trainer: L.Trainer, model: GenerativeModule, iteration: int) -> None:
        self.evaluate(trainer, model, "fit")

    @keeps_training_rng
    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run:
            self.evaluate(trainer, pl_module, "test")  # type: ignore[arg-type]
