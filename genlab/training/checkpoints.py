"""Checkpoints that survive crashes: periodic saves counted in iterations, the previous `last.ckpt` kept, one rule
for "the last checkpoint" of a run or an experiment, and a one-line error naming the file (and the fallback) when
a checkpoint cannot be read."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from genlab.atomic_files import write_bytes
from genlab.errors import GenlabError, first_line
from genlab.run_folder import version_number
from genlab.runtime import CheckpointHooks, iterations_done

LAST_NAME = "last.ckpt"
PREVIOUS_NAME = "previous.ckpt"


def last_checkpoint(folder: Path) -> Path | None:
    """The last checkpoint under `folder` — an experiment folder (`lightning_logs/dcgan_mnist`), a run folder or its
    `checkpoints/` — or None: the most recently written `last.ckpt`, newer version first on a tie. A run killed
    between keeping `previous.ckpt` and writing the new `last.ckpt` counts with its `previous.ckpt`."""
    found: list[Path] = []
    for checkpoints in (folder, folder / "checkpoints", *folder.glob("*/checkpoints")):
        last, previous = checkpoints / LAST_NAME, checkpoints / PREVIOUS_NAME
        found += [last] if last.is_file() else [previous] if previous.is_file() else []
    return max(found, key=lambda path: (path.stat().st_mtime, version_number(path.parent.parent)), default=None)


def fallback_checkpoint(broken: Path) -> Path | None:
    """The best other checkpoint beside a broken one: `previous.ckpt`, else the newest other `.ckpt`."""
    previous = broken.parent / PREVIOUS_NAME
    if previous.is_file() and previous != broken:
        return previous
    others = [p for p in broken.parent.glob("*.ckpt") if p != broken]
    return max(others, key=lambda p: p.stat().st_mtime) if others else None


def looks_complete(path: Path) -> bool:
    """A cheap structural check (torch checkpoints are zip archives whose directory sits at the end)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with readable load errors, and local saves through `genlab.atomic_files`: whole or
    not at all, and a full disk named in one line with the size the checkpoint needed."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote file systems: Lightning's own writer
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes(Path(path), buffer.getvalue())

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(path)
        try:
            if map_location is None:
                return super().load_checkpoint(path, weights_only=weights_only)
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError) as error:
            check_checkpoint_file(path)  # names what the file is, in one line
            raise GenlabError(f"checkpoint {path} could not be loaded ({first_line(error, 160)})") from None


def check_checkpoint_file(path: Path) -> None:
    """One line for a `--ckpt_path` that cannot be a genlab checkpoint: missing, a folder, unreadable, not a
    (complete) PyTorch file, one carrying pickled objects (refused: loading them could run code), or not a
    Lightning checkpoint. The file is read safely (`weights_only=True`): nothing in it is executed."""
    fix = "pass a checkpoint a genlab run wrote, or --ckpt_path last"
    fallback = fallback_checkpoint(path) if path.is_file() else None
    damaged_fix = f"resume from the previous one: --ckpt_path {fallback}" if fallback else fix
    if not path.exists():
        raise GenlabError(f"checkpoint {path} does not exist: check --ckpt_path")
    if path.is_dir():
        raise GenlabError(f"checkpoint {path} is a folder, not a checkpoint file: {fix}")
    if not os.access(path, os.R_OK):
        raise GenlabError(f"checkpoint {path} cannot be read (permission denied): fix its permissions or {fix}")
    if not looks_complete(path):
        raise GenlabError(f"checkpoint {path} is truncated or corrupt, or not a PyTorch checkpoint at all:"
                          f" {damaged_fix}")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)  # torch 2.2: str only
    except pickle.UnpicklingError:
        raise GenlabError(f"checkpoint {path} holds pickled Python objects, which genlab never loads (they could run"
                          f" code): {fix}") from None
    except Exception as error:  # noqa: BLE001 - damaged records inside a complete-looking archive
        raise GenlabError(f"checkpoint {path} is truncated or corrupt ({first_line(error)}): {damaged_fix}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise GenlabError(f"checkpoint {path} is a PyTorch file but not a Lightning checkpoint (no state_dict): {fix}")


class RunCheckpoint(CheckpointHooks):
    """ModelCheckpoint with `save_last`, periodic saves every N iterations and the previous last kept.

    Args:
        every_n_iterations: also save every N training batches (iterations). Lightning's own
            `every_n_train_steps` counts optimizer steps, of which a GAN makes 1 + 1/n_critic per iteration.
        keep_previous: before `last.ckpt` is replaced, keep the old one as `previous.ckpt`, so one damaged
            file never costs the run.
        (other arguments: see Lightning's ModelCheckpoint)
    """

    def __init__(self, *args: Any, every_n_iterations: int | None = None, keep_previous: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if every_n_iterations is not None and every_n_iterations < 1:
            raise GenlabError(f"checkpoint.every_n_iterations must be at least 1 (or null), got {every_n_iterations}")
        self.every_n_iterations, self.keep_previous = every_n_iterations, keep_previous

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        if (self.every_n_iterations and iterations_done(trainer) % self.every_n_iterations == 0
                and self.may_save(trainer)):
            self.save_now(trainer)

    def before_saving_last(self, trainer: L.Trainer) -> None:
        if self.keep_previous and self.save_last and trainer.is_global_zero and self.dirpath:
            last = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
            if last.is_file() and not last.is_symlink() and looks_complete(last):  # never keep a broken one
                os.replace(last, last.parent / PREVIOUS_NAME)

    def save_last_now(self, trainer: L.Trainer) -> Path:
        """Write `last.ckpt` (keeping the old one as `previous.ckpt`) outside the schedule, e.g. on SIGTERM."""
        return self.save_now(trainer, top_k=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning 2.6 writes last.ckpt at the end of a fast_dev_run although it promises not to checkpoint.
        if trainer.fast_dev_run:
            return
        super().on_train_end(trainer, pl_module)
        # Lightning saves last.ckpt at the end only if none was saved during the run: after periodic saves, a run
        # stopped by max_steps (or between epochs' saves) would end with a last.ckpt behind its final weights.
        if self.save_last and self.may_save(trainer):
            self.save_now(trainer, top_k=False)
