"""SIGTERM and SIGINT end a fit cleanly: the current iteration finishes, `last.ckpt` is written atomically, one
line says how to resume, and the exit status says why (143 / 130), so a scheduler never takes a stopped run
for a finished one. A second signal exits at once; the checkpoints on disk stay whole (each is written under a
temporary name and then renamed), so at worst the newest iterations are lost, never a file.

Under DDP the processes agree whether any of them was signalled, so all stop after the same iteration and write
one checkpoint together, whether the scheduler signals every process (SLURM) or only the first (`kill PID`, Ctrl-C
in a terminal). The flag of every iteration is all-reduced without waiting, and read `DECISION_LAG` iterations
later, when the collective and the copy to the host are long done: the host never stops to wait for the device
for it (on a GPU it would otherwise, every iteration), and the stop comes at most `DECISION_LAG` iterations after
the signal.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from types import FrameType
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.utilities.exceptions import SIGTERMException

from genlab import slurm
from genlab.runtime import iterations_done
from genlab.training.checkpoints import RunCheckpoint

DECISION_LAG = 2  # DDP: iterations between a process's signal flag and the stop every process takes on it
EXIT_STATUS = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT,  # 143, 130: the shells' convention
               "SIGUSR1": 128 + signal.SIGUSR1}  # SLURM's warning before the time limit (genlab.slurm)


class GracefulStop(L.Callback):
    """Added to every `genlab fit` by the CLI. `command` is the command line to print for resuming."""

    #: the signal that stopped the last fit in this process ("SIGTERM", "SIGINT") or None; read by `genlab.cli.main`
    stopped_by: str | None = None

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or ["genlab", "fit", "--config", "<your config>"]
        self._received: str | None = None
        self._previous: dict[int, Any] = {}
        self._flags: list[SharedFlag] = []  # DDP: the flags of the last iterations, not read yet

    @property
    def received(self) -> str | None:
        """The signal received in this fit, if any (the stop follows at the end of the current iteration)."""
        return self._received

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registers its own SIGTERM handler just before this hook; genlab's replaces it (Lightning's
        # stops each process wherever it gets the signal, which under DDP can leave them one iteration apart)
        GracefulStop.stopped_by, self._received, self._flags = None, None, []

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
                when = "this iteration" if trainer.world_size == 1 else f"at most {DECISION_LAG} more iterations"
                print(f"genlab: {name} received: stopping after {when} and saving last.ckpt"
                      " (send it again to stop at once)", file=sys.stderr, flush=True)

        # under SLURM also SIGUSR1 (`--signal=B:USR1@120`): stop, save and requeue (it replaces Lightning's own
        # requeue, which saves an hpc_ckpt outside the run folder)
        for signum in (signal.SIGTERM, signal.SIGINT, *((signal.SIGUSR1,) if slurm.job_id() else ())):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        received = self._received is not None
        if trainer.world_size > 1:
            self._flags.append(SharedFlag(received, trainer.strategy.root_device))
            received = len(self._flags) > DECISION_LAG and self._flags.pop(0).read()
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
            # SIGUSR1: SLURM's time limit is near; `genlab.cli` requeues the job once the fit has wound down
            then = "requeueing the job" if GracefulStop.stopped_by == "SIGUSR1" else f"resume with: {resume}"
            print(f"genlab: stopped by {GracefulStop.stopped_by} after iteration {iterations_done(trainer)}; {saved};"
                  f" {then}", file=sys.stderr, flush=True)
        raise SIGTERMException  # every process here, after the same iteration; `genlab.cli.main` sets the status

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for flag in self._flags:  # the run completed: its last flags are only collected
            flag.read()
        self._flags = []

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, previous in self._previous.items():
            if previous is not None:
                signal.signal(signum, previous)
        self._previous = {}


class SharedFlag:
    """One process's flag, or-ed over every process by an all-reduce that nobody waits for now; `read()` later
    returns the combined value. On CUDA the result is copied to pinned host memory behind an event, so reading it
    waits for that copy only (done long before, DECISION_LAG iterations back), not for the device to drain."""

    def __init__(self, raised: bool, device: torch.device) -> None:
        self.flag = torch.tensor(int(raised), dtype=torch.int32, device=device)
        self.work = dist.all_reduce(self.flag, op=dist.ReduceOp.MAX, async_op=True)
        self.event: torch.cuda.Event | None = None
        if device.type == "cuda":
            self.work.wait()  # NCCL: the current stream waits for the collective; the host does not
            self.host = torch.empty((), dtype=torch.int32, pin_memory=True)
            self.host.copy_(self.flag, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()

    def read(self) -> bool:
        if self.event is not None:
            self.event.synchronize()
            return bool(self.host)
        self.work.wait()
        return bool(self.flag)
