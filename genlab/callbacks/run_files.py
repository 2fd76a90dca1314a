"""Where a run's files go and how images reach TensorBoard; shared by every callback.

`save_artifact` is the one way a callback writes an image: rank zero only, nothing in a smoke test
(`fast_dev_run`, like Lightning's own logging and checkpointing), written atomically, logged to TensorBoard.
`figure_to_image` renders a matplotlib `Figure` with Agg (no pyplot, no global backend switch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import Tensor

from genlab.atomic_files import save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def writes_files(trainer: L.Trainer) -> bool:
    """Whether this process writes run files: rank zero, outside smoke tests."""
    return trainer.is_global_zero and not trainer.fast_dev_run


def save_artifact(trainer: L.Trainer, relative_path: str, image: Tensor, tag: str, step: int) -> Path | None:
    """Save a CHW image in [0, 1] as `<run folder>/<relative_path>` and log it to TensorBoard under `tag`; the
    path written, or None where this process writes no files (see `writes_files`)."""
    if not writes_files(trainer):
        return None
    path = run_dir(trainer) / relative_path
    save_png(image, path)
    log_image(trainer, tag, image, step)
    return path


def figure_to_image(figure: Figure) -> Tensor:
    """A matplotlib figure rendered with Agg, as a CHW float image in [0, 1]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
