"""Callbacks for crash and DDP tests: one pauses after a given iteration, so the test can SIGKILL (or SIGTERM) the run
there (a stop request, SIGTERM or SIGINT, ends the pause); another saves each DDP process's generator average."""

import time

import lightning as L
import torch

from genlab.callbacks.graceful_stop import GracefulStop
from genlab.runtime import iterations_done


class PauseAfterIteration(L.Callback):
    def __init__(self, iteration: int, seconds: float = 120.0) -> None:
        self.iteration, self.seconds = iteration, seconds

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if iterations_done(trainer) == self.iteration:
            end = time.monotonic() + self.seconds
            stops = [callback for callback in trainer.callbacks if isinstance(callback, GracefulStop)]
            while time.monotonic() < end and not any(stop.received for stop in stops):
                time.sleep(0.05)


class SaveAveragePerRank(L.Callback):
    """For DDP tests: every process writes its own generator (and average, if any) at fit end, after the
    callbacks before it in the list (a checkpoint holds only the first process's)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        average = pl_module.generator_average
        torch.save({"average": average.state_dict() if average is not None else {},
                    "generator": pl_module.generator.state_dict()},
                   f"{self.folder}/rank{trainer.global_rank}.pt")
