"""The evaluation classifier's training module: cross-entropy on labelled images, accuracy on val and test.

Its checkpoint is what the classifier metrics load (`genlab.metrics.classifier_checkpoint.load_classifier`): besides the
weights it records the network's class and settings, the data module it was trained on and its latest
validation accuracy.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from genlab.errors import GenlabError
from genlab.nets.classifier import CHECKPOINT_KEY, ClassifierNet, classifier_spec
from genlab.runtime import attached_trainer
from genlab.training import DivergenceGuard, TrainingModule


class Classifier(TrainingModule):
    """Trains a `ClassifierNet` with cross-entropy; logs `loss/train`, `val/loss`, `val/acc`, `test/loss`, `test/acc`.

    Args:
        network: e.g. `genlab.nets.ConvClassifier` (the metrics' default) or `genlab.nets.MLPClassifier` (the
            reference).
        optimizer: optimizer class and settings (the reference: RMSprop, lr 1e-3, alpha 0.9).
        on_divergence: when the loss, gradients or weights turn NaN or infinite, "stop" saves the last good
            state as checkpoints/diverged-iteration_N.ckpt and ends the run with one line naming the iteration;
            "skip" leaves that update out (logged as `divergence/skipped_updates`).
    """

    def __init__(self, network: ClassifierNet, optimizer: OptimizerCallable = torch.optim.Adam,
                 on_divergence: Literal["stop", "skip"] = "stop") -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network", "optimizer"])
        self.network, self.optimizer = network, optimizer
        self.divergence = DivergenceGuard(on_divergence)
        self.val_accuracy = MulticlassAccuracy(network.num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(network.num_classes, average="micro")
        self._last_val_accuracy: float | None = None

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.check_data_shape(tuple(self.network.in_shape), "model.network's in_shape")
        datamodule = getattr(self.trainer, "datamodule", None)
        data_classes = getattr(datamodule, "num_classes", None)
        if data_classes is not None and data_classes != self.network.num_classes:
            raise GenlabError(
                f"the classifier has num_classes {self.network.num_classes} but the data ({type(datamodule).__name__})"
                f" has {data_classes} classes: set model.network.init_args.num_classes to {data_classes}"
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.build_optimizer(self.optimizer, self.network.parameters(), "model.optimizer")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        loss = F.cross_entropy(self.network(images), labels)
        self.log("loss/train", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], prefix: str, accuracy: MulticlassAccuracy) -> None:
        images, labels = batch
        logits = self.network(images)
        accuracy.update(logits, labels)
        self.log(f"{prefix}/loss", F.cross_entropy(logits, labels), on_epoch=True, batch_size=len(labels),
                 sync_dist=True)
        self.log(f"{prefix}/acc", accuracy, on_epoch=True, batch_size=len(labels))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_accuracy)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_accuracy)

    def on_validation_epoch_end(self) -> None:
        if self.val_accuracy.update_called and not self.trainer.sanity_checking:
            self._last_val_accuracy = float(self.val_accuracy.compute())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        checkpoint[CHECKPOINT_KEY] = {
            **classifier_spec(self.network),
            "data": type(datamodule).__name__ if datamodule is not None else None,
            "val_accuracy": self._last_val_accuracy,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._last_val_accuracy = checkpoint.get(CHECKPOINT_KEY, {}).get("val_accuracy")
