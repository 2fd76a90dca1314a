"""The one place genlab reads or edits Lightning's private state. Each use is pinned by tests/test_runtime.py, so a
Lightning release that moves one fails there, by name, instead of silently shifting a schedule or a resume."""

from __future__ import annotations

import os
from typing import Any

import lightning as L


def iterations_done(trainer: L.Trainer) -> int:
    """Training batches processed so far, across epochs and resumes.

    Under manual optimization `trainer.global_step` counts optimizer steps (a D and a G step make 2), so
    schedules such as "every 200 iterations" count batches instead.
    """
    return trainer.fit_loop.epoch_loop.batch_progress.total.ready


def logging_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning writes step logs at this step (every `log_every_n_steps`)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True)) or bool(trainer.fast_dev_run)


def rewind_batch_progress(checkpoint: dict[str, Any]) -> None:
    """Count the batch in progress as not begun, so a run resumed from a mid-batch checkpoint redoes it under
    its own iteration number (Lightning would count it twice)."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
    if progress:
        for counts in (progress["total"], progress["current"]):
            counts["ready"] = counts["started"] = counts["completed"]


def first_process() -> bool:
    """Rank zero of the whole job, known before the Trainer exists (from the launcher's environment)."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("LOCAL_RANK", "NODE_RANK"))


def launched_by_first_process() -> bool:
    """A process Lightning's launcher started for DDP beside the first one on this machine (LOCAL_RANK > 0): it
    takes the first process's decisions (precision, run folder) from the environment it inherited."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0
