"""When an evaluating callback (scores, memorisation) runs during a fit: after every `every_n_epochs`-th epoch
(0: none) and at the end of training, never twice for the same weights, and not in a smoke test."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from genlab.errors import GenlabError
from genlab.models.base import GenerativeModule
from genlab.rng import keeps_training_rng
from genlab.runtime import iterations_done


def share_first_process_buffers(trainer: L.Trainer, model: torch.nn.Module) -> None:
    """Give every DDP process the first process's buffers (BatchNorm running statistics) before an evaluation.

    DDP keeps weights identical, but each process's running statistics come from its own batches, and only the
    first process's are saved. Sampling with them on every process makes a score that of the model the checkpoint
    holds, whatever the number of processes. Training is unchanged: BatchNorm normalises training batches with
    their own statistics, and the other processes' running statistics are never saved.
    """
    if trainer.world_size < 2 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer.data, src=0)


class ScheduledEvaluation(L.Callback):
    """Calls `evaluate_during_fit` on the schedule above. The iteration it last evaluated travels in checkpoints,
    so a resumed run neither repeats nor skips an evaluation."""

    every_n_epochs: int = 0
    _last_iteration: int = -1

    def evaluates_in(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> bool:
        """For `setup`: one line when the model cannot sample; whether `stage` evaluates (fit and test, outside
        smoke tests)."""
        if not isinstance(pl_module, GenerativeModule):
            raise GenlabError(f"{type(self).__name__} needs a generative model; {type(pl_module).__name__} cannot"
                              " sample")
        return not trainer.fast_dev_run and stage in ("fit", "test")

    def evaluate_during_fit(self, trainer: L.Trainer, model: GenerativeModule, iteration: int) -> None:
        raise NotImplementedError  # pragma: no cover - interface

    @keeps_training_rng
    def _evaluate_once(self, trainer: L.Trainer, model: GenerativeModule) -> None:
        iteration = iterations_done(trainer)
        if trainer.fast_dev_run or iteration in (0, self._last_iteration):
            return
        self._last_iteration = iteration
        share_first_process_buffers(trainer, model)
        self.evaluate_during_fit(trainer, model, iteration)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._evaluate_once(trainer, pl_module)  # type: ignore[arg-type]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._evaluate_once(trainer, pl_module)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return {"last_iteration": self._last_iteration}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_iteration = state_dict.get("last_iteration", -1)
