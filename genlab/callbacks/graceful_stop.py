"""SIGTERM and SIGINT end a fit cleanly: the current iteration finishes, `last.ckpt` is written atomically, one
line says how to resume, and the exit status says why (143 / 130), so a scheduler never takes a stopped run
for a finished one. A second signal exits at once; the checkpoints on disk stay whole (each is written under a
temporary name and then renamed), so at worst the newest iterations are lost, never a file."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from genlab.callbacks.checkpoint import RunCheckpoint
from genlab.models.base import iterations_done
from genlab.runtime import request_stop_after_iteration

EXIT_STATUS = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}  # 143, 130: the shells' convention


class GracefulStop(L.Callback):
    """Added to every `genlab fit` by the CLI. `command` is the command line to print for resuming."""

    #: the signal that stopped the last fit in this process ("SIGTERM", "SIGINT") or None; read by `genlab.cli.main`
    stopped_by: str | None = None

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or ["genlab", "fit", "--config", "<your config>"]
        self._previous_sigint: Any = None
        self._lightning_sigterm: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning has registered its SIGTERM handler by now (after on_fit_start); genlab's runs before it
        GracefulStop.stopped_by = None
        self._lightning_sigterm = signal.getsignal(signal.SIGTERM)
        self._previous_sigint = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if GracefulStop.stopped_by is not None:  # the second signal: at once
                os._exit(EXIT_STATUS.get(name, 128 + signum))
            GracefulStop.stopped_by = name
            if trainer.is_global_zero:
                print(f"genlab: {name} received: stopping after this iteration and saving last.ckpt"
                      " (send it again to stop at once)", file=sys.stderr, flush=True)
            if signum == signal.SIGTERM and callable(self._lightning_sigterm):
                self._lightning_sigterm(signum, frame)  # Lightning's own: tells the other DDP processes
            request_stop_after_iteration(trainer)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if GracefulStop.stopped_by is None or not isinstance(exception, SIGTERMException):
            return
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, RunCheckpoint) and checkpoint.dirpath:
            path = checkpoint.save_last_now(trainer)
            saved = f"saved {path}"
            resume = shlex.join([*self.command, "--ckpt_path", "last"])
        else:
            saved, resume = "nothing saved (checkpointing is off)", "start it again"
        if trainer.is_global_zero:
            print(f"genlab: stopped by {GracefulStop.stopped_by} after iteration {iterations_done(trainer)}; {saved};"
                  f" resume with: {resume}", file=sys.stderr, flush=True)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous_sigint is not None:  # Lightning restores SIGTERM itself
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
