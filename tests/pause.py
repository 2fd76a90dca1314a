"""A callback for crash tests: after a given iteration it sleeps, so the test can SIGKILL (or SIGTERM) the run
there; a stop request (SIGTERM, SIGINT) ends the pause."""

import time

import lightning as L

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
