"""Lightning's ModelCheckpoint with genlab's defaults and fixes."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that keeps `last.ckpt` for `--ckpt_path last`.

    Lightning 2.6 writes `last.ckpt` at the end of a `fast_dev_run` although it promises to suppress
    checkpointing there; this subclass keeps the promise. Note that `every_n_train_steps` counts optimizer
    steps, and a GAN makes two per iteration (one D, one G step).
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        super().on_train_end(trainer, pl_module)
