"""`TrainingModule`: the LightningModule every genlab model builds on. It wires the training machinery in
(`genlab.training.resume`, `genlab.training.divergence`) so that a model only writes its networks, its
`training_step` and its optimizers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from genlab import run_layout
from genlab.errors import GenlabError
from genlab.runtime import (
    answer_gpu_checks_once_without_gpus,
    attached_trainer,
    iterations_done,
    keep_an_unfinished_epoch_running,
    logging_this_step,
    rewind_batch_progress,
    step_counted,
    updates_need_no_hooks,
)
from genlab.training import resume
from genlab.training.ddp import AlternatingUpdatesDDP
from genlab.training.divergence import DivergenceGuard
from genlab.training.fused import fused_when_unset
from genlab.training.optimizer_settings import Settings, configured_settings, reapply


def with_latest(history: list[Any], current: Any) -> list[Any]:
    """`history` with `current` appended unless it is already the last entry: how the weights were trained, one
    entry per change (precision, or the whole fast path), across resumes."""
    return history if history[-1:] == [current] else [*history, current]


class TrainingModule(L.LightningModule):
    """A LightningModule with exact resume, a divergence guard and an iteration counter.

    A model sets `self.divergence = DivergenceGuard(on_divergence)` in its constructor (the default stops on
    divergence). Under automatic optimization the hooks below drive the guard; under manual optimization the
    model calls `divergence.remember_buffers(self)` before each update's forward pass and
    `divergence.step(...)` in place of `optimizer.step()`. The guard's checks are read at the boundaries below
    (a logging step, a checkpoint, validation, the end of an epoch or of the fit), never in between.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.divergence = DivergenceGuard()
        self.trained_iterations = 0  # iterations behind loaded weights (set by a checkpoint, e.g. in genlab test)
        self.training_precisions: list[str] = []  # the precisions the weights were trained in, in order
        self.training_fast_paths: list[dict[str, Any]] = []  # each fit's precision, layout and why, in order
        self.saving_mid_batch = False
        self.diverged_at: int | None = None  # the first non-finite iteration, once the guard has stopped the run
        self.no_op_steps = 0
        self.lean_updates = False  # manual optimization without Lightning's per-call hooks (`updates_need_no_hooks`)
        self.optimizer_keys: dict[int, str] = {}  # id(optimizer) → its configuration key, for messages
        self.configured_optimizers: list[tuple[torch.optim.Optimizer, Settings]] = []

    @property
    def iteration(self) -> int:
        """Batches trained on so far (0 outside a fit)."""
        trainer = attached_trainer(self)
        return iterations_done(trainer) if trainer is not None else 0

    def setup(self, stage: str) -> None:
        self.divergence.new_stage()
        answer_gpu_checks_once_without_gpus()
        if stage == "fit":
            resume.seed_this_process()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.automatic_optimization:
            self.divergence.remember_buffers(self)

    def on_before_backward(self, loss: Tensor) -> None:
        if self.automatic_optimization:
            self.divergence.loss = loss.detach()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.automatic_optimization:
            self.divergence.before_automatic_step(self, optimizer)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.divergence.after_automatic_step()

    def on_fit_start(self) -> None:
        """The optimizers' settings as configured, before a checkpoint's optimizer state replaces them."""
        self.configured_optimizers = [(optimizer, configured_settings(optimizer))
                                      for optimizer in self.trainer.optimizers]

    def on_train_start(self) -> None:
        self.lean_updates = not self.automatic_optimization and updates_need_no_hooks(
            self.trainer, self, TrainingModule, own_strategies=(AlternatingUpdatesDDP,))
        if self.trainer.ckpt_path:  # resumed: the configured settings win over the checkpoint's, and say so
            for optimizer, settings in self.configured_optimizers:
                for line in reapply(optimizer, settings, self.optimizer_keys.get(id(optimizer), "an optimizer")):
                    rank_zero_info(line)

    def backward_of_update(self, loss: Tensor) -> None:
        """`manual_backward`, or plain `loss.backward()` where that is all Lightning would do (`lean_updates`)."""
        if self.lean_updates:
            loss.backward()
        else:
            self.manual_backward(loss)

    def step_of_update(self, optimizer: torch.optim.Optimizer) -> None:
        """`optimizer.step()` of a `LightningOptimizer`, or the torch optimizer's step counted as Lightning counts
        it where that is all Lightning would do (`lean_updates`)."""
        if self.lean_updates:
            step_counted(self.trainer, optimizer)
        else:
            optimizer.step()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.logging_this_step():
            self.divergence.settle(self)
            if self.automatic_optimization and self.divergence.policy == "skip":
                self.log("divergence/skipped_updates", float(self.divergence.skipped_updates), on_step=True,
                         on_epoch=False)

    def on_train_epoch_end(self) -> None:
        self.divergence.settle(self)

    def on_validation_start(self) -> None:
        self.divergence.settle(self)

    def on_train_end(self) -> None:
        self.divergence.settle(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.divergence.settle(self)  # never a checkpoint of weights the guard has not seen
        resume.save_rng_states(checkpoint)
        checkpoint[resume.SKIPPED_KEY] = self.divergence.skipped_updates
        checkpoint[resume.ITERATIONS_KEY] = self.iteration
        trainer = attached_trainer(self)
        self.training_precisions = self.precisions_trained_in(str(trainer.precision) if trainer else "32-true")
        checkpoint[resume.PRECISIONS_KEY] = self.training_precisions
        self.training_fast_paths = self.fast_paths_trained_in()
        checkpoint[resume.FAST_PATHS_KEY] = self.training_fast_paths
        if trainer is not None:
            keep_an_unfinished_epoch_running(checkpoint, trainer)
        if self.saving_mid_batch:
            rewind_batch_progress(checkpoint, self.no_op_steps)
            checkpoint[resume.DIVERGED_KEY] = self.diverged_at

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        resume.check_weights_fit(checkpoint.get("state_dict", {}), self.state_dict())
        self.divergence.skipped_updates = int(checkpoint.get(resume.SKIPPED_KEY, 0))
        self.trained_iterations = int(checkpoint.get(resume.ITERATIONS_KEY, 0))
        self.training_precisions = list(checkpoint.get(resume.PRECISIONS_KEY, []))
        self.training_fast_paths = list(checkpoint.get(resume.FAST_PATHS_KEY, []))
        resume.restore_this_process_rng(checkpoint)

    def save_diverged_state(self, iteration: int, no_op_steps: int = 0) -> Path:
        """Save the state kept from before the failed update at `iteration` beside the run's checkpoints (every
        process takes part, rank 0 writes), counting the batch under way as not begun. The weights, optimizer
        state and BatchNorm statistics are those from before `iteration` (every update since was a no-op); the
        data position and random streams are those of now, so when the guard read its checks some iterations
        later (at a boundary), a run resumed from it continues from now. The checkpoint says both. `no_op_steps`:
        the optimizer steps of the batch under way that the guard made no-ops, taken back from `global_step`."""
        folder = Path(getattr(self.trainer.checkpoint_callback, "dirpath", None) or self.trainer.default_root_dir)
        path = folder / run_layout.diverged_checkpoint(iteration)
        self.diverged_at, self.no_op_steps = iteration, no_op_steps
        with self._mid_batch():
            self.trainer.save_checkpoint(path, weights_only=False)
        return path

    @contextmanager
    def _mid_batch(self) -> Iterator[None]:
        self.saving_mid_batch = True
        try:
            yield
        finally:
            self.saving_mid_batch = False

    def precisions_trained_in(self, current: str) -> list[str]:
        """`training_precisions` with the precision of the training now running appended if it differs."""
        return with_latest(self.training_precisions, current)

    def fast_paths_trained_in(self) -> list[dict[str, Any]]:
        """`training_fast_paths` with the path of the fit now running (`fast_path`, set by the CLI) appended if it
        differs: a `genlab test` record says the layout and reason the weights were trained with, not only its own."""
        current = getattr(self, "fast_path", None)
        return self.training_fast_paths if current is None else with_latest(self.training_fast_paths, current)

    def build_optimizer(self, factory: Any, parameters: Any, key: str) -> torch.optim.Optimizer:
        """Instantiate a YAML-chosen optimizer, turning bad settings (a negative lr, …) into one line; fused where
        the configuration leaves the implementation open (`genlab.training.fused`)."""
        try:
            optimizer = fused_when_unset(factory(parameters))
        except (ValueError, TypeError) as error:
            raise GenlabError(f"{key}: {error}: fix the optimizer's init_args in the config") from None
        self.optimizer_keys[id(optimizer)] = key
        return optimizer

    def logging_this_step(self) -> bool:
        """Whether Lightning writes step logs this step (every `log_every_n_steps`): values logged at other
        steps are computed and then dropped, which costs real time when a step takes a millisecond."""
        trainer = attached_trainer(self)
        return trainer is None or logging_this_step(trainer)

    def check_data_shape(self, expected: tuple[int, ...], where: str) -> None:
        """Stop before training when the data module's sample shape disagrees with the networks'."""
        trainer = attached_trainer(self)
        datamodule = getattr(trainer, "datamodule", None)
        data_shape = getattr(datamodule, "data_shape", None)
        if data_shape is not None and tuple(data_shape) != tuple(expected):
            raise GenlabError(
                f"the data ({type(datamodule).__name__}) gives samples of shape {tuple(data_shape)} but {where} is"
                f" {tuple(expected)}: make the model's shape settings match the data"
            )
