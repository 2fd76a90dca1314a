"""SIGTERM and SIGINT end a fit cleanly: the current iteration finishes, `last.ckpt` is written atomically, one
line says how to resume, and the exit status says why (143 / 130), so a scheduler never takes a stopped run
for a finished one. A second signal exits at once; the checkpoints on disk stay whole (each is written under a
temporary name and then renamed), so at worst the newest iterations are lost, never a file.

Under DDP the processes agree at the end of every iteration (one all-reduce of a flag) whether any of them was
signalled, so all stop after the same iteration and write one checkpoint together, whether the scheduler
signals every process (SLURM) or only the first (`kill PID`, Ctrl-C in a terminal).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from genlab.runtime import iterations_done
from genlab.training.checkpoints import RunCheckpoint

EXIT_STATUS = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}  # 143, 130: the shells' convention


class GracefulStop(L.Callback):
    """Added to every `genlab fit` by the CLI. `command` is the command line to print for resuming."""

    #: the signal that stopped the last fit in this process ("SIGTERM", "SIGINT") or None; read by `genlab.cli.main`
    stopped_by: str | None = None

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or ["genlab", "fit", "--config", "<your config>"]
        self._received: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def received(self) -> str | None:
        """The signal received in this fit, if any (the stop follows at the end of the current iteration)."""
        return self._received

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registers its own SIGTERM handler just before this hook; genlab's replaces it (Lightning's
        # stops each process wherever it gets the signal, which under DDP can leave them one iteration apart)
        GracefulStop.stopped_by, self._received = None, None

        def handler(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._received is not None:
                if trainer.is_global_zero:  # the second signal: at once, taking the other processes along
                    launcher = trainer.strategy.launcher
                    if launcher is not None:
                        launcher.kill(signal.SIGKILL)
                    os._exit(EXIT_STATUS.get(self._received, 128 + signum))
                return  # other processes follow the first one
            self._received = name
            if trainer.is_global_zero:
                print(f"genlab: {name} received: stopping after this iteration and saving last.ckpt"
                      " (send it again to stop at once)", file=sys.stderr, flush=True)

        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        received = self._received is not None
        if trainer.world_size > 1:
            received = bool(trainer.strategy.reduce_boolean_decision(received, all=False))
        if not received:
            return
        GracefulStop.stopped_by = self._received or "SIGTERM"  # a process not signalled itself stops with the rest
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, RunCheckpoint) and checkpoint.dirpath:
            saved = f"saved {checkpoint.save_last_now(trainer)}"  # as a periodic save: resume continues exactly
            resume = shlex.join([*self.command, "--ckpt_path", "last"])
        else:
            saved, resume = "nothing saved (checkpointing is off)", "start it again"
        if trainer.is_global_zero:
            print(f"genlab: stopped by {GracefulStop.stopped_by} after iteration {iterations_done(trainer)}; {saved};"
                  f" resume with: {resume}", file=sys.stderr, flush=True)
        raise SIGTERMException  # every process here, after the same iteration; `genlab.cli.main` sets the status

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, previous in self._previous.items():
            if previous is not None:
                signal.signal(signum, previous)
        self._previous = {}
