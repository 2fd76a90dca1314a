"""Where a run's files go and how images reach TensorBoard; shared by every callback."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import Tensor


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run (the logger's version folder): samples, plots and metrics go under it.

    The same folder as `trainer.log_dir`, without its broadcast: that is a collective call, which would hang a
    DDP run when only rank 0 asks (and only rank 0 writes files).
    """
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    folder = logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir
    return Path(folder or trainer.default_root_dir)


def to_unit_range(images: Tensor) -> Tensor:
    """Images in [-1, 1] → float [0, 1] on the CPU, for saving and logging."""
    return images.detach().float().add(1).div(2).clamp(0, 1).cpu()


def log_image(trainer: L.Trainer, tag: str, image: Tensor, step: int) -> None:
    """Log one CHW image in [0, 1] to every TensorBoard logger of the trainer."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step)
