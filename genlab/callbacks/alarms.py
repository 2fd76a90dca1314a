"""Alarms: one warning line when a run goes wrong while it trains, not only in a plot someone may never open.

- Score alarms: a score crosses its threshold, e.g. mode collapse seen as `classifier/label_tv` rising or
  `classifier/recall` / `classifier/coverage` falling (`GenerativeMetrics(alarms=…)`). Every process computes the
  same scores, so every process takes the same decision to stop: no extra collective.
- `StalledLossAlarm`: a training loss stops moving (a saturated discriminator, a generator that gets no gradient).
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from genlab.errors import GenlabError


@dataclass(frozen=True)
class ScoreAlarm:
    """Sound when `score` (a full score name, e.g. `classifier/recall`) goes above `above` or below `below`, from
    iteration `after` on: early in training every GAN looks collapsed (a healthy MLP GAN on MNIST has label TV 0.82
    and recall 0 after its first epoch), so an alarm watches the run once it should have settled. Iterations are
    each process's batches: under DDP on N processes an epoch has 1/N as many."""

    score: str
    above: float | None = None
    below: float | None = None
    after: int = 0

    def check(self) -> None:
        """One line when the alarm cannot fire or could fire both ways."""
        if (self.above is None) == (self.below is None):
            raise GenlabError(f"the alarm on {self.score!r} needs exactly one of above or below, e.g."
                              f" {{score: {self.score}, below: 0.2}}")
        if self.after < 0:
            raise GenlabError(f"the alarm on {self.score!r} has after = {self.after}; use 0 or more iterations")

    def watched(self, scores: dict[str, float]) -> float:
        """The score's value; one line, at the first evaluation, when the evaluation does not give it."""
        if self.score not in scores:
            raise GenlabError(f"no score {self.score!r} to watch: the evaluation gives {sorted(scores)}; fix the"
                              " alarm's score name (or turn on the score, e.g. manifold_k for recall and coverage)")
        return scores[self.score]

    def message(self, scores: dict[str, float]) -> str | None:
        """The warning if the alarm sounds for these scores, else None."""
        value = self.watched(scores)
        if self.above is not None and value > self.above:
            return f"{self.score} = {value:.4g} above {self.above:g}"
        if self.below is not None and value < self.below:
            return f"{self.score} = {value:.4g} below {self.below:g}"
        return None


def record_alarm(trainer: L.Trainer, name: str, iteration: int, sounding: bool, warning: str | None = None) -> None:
    """On the first process: `alarm/<name>` as 1 (sounding) or 0 to the loggers, so a step in the curve marks
    when, and the warning line, if any, on stderr."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics({f"alarm/{name}": float(sounding)}, step=iteration)
    if warning is not None:
        print(f"genlab: warning: iteration {iteration}: {warning}", file=sys.stderr, flush=True)


def sound_alarms(trainer: L.Trainer, alarms: list[ScoreAlarm], scores: dict[str, float], iteration: int,
                 stop: bool) -> list[str]:
    """Check every alarm due at `iteration`: print one line per alarm that sounds (rank 0), log `alarm/<score>` as
    1 or 0 to the loggers (a step in the curve marks when), and ask the trainer to stop if `stop`; returns the
    messages."""
    messages = []
    for alarm in alarms:
        alarm.watched(scores)  # a wrong name fails at the first evaluation, not after `after` iterations
        if iteration < alarm.after:
            continue
        message = alarm.message(scores)
        action = "stopping (stop_on_alarm)" if stop else "training goes on"
        warning = None if message is None else f"{message} (mode collapse?); {action}"
        record_alarm(trainer, alarm.score, iteration, message is not None, warning)
        if message is not None:
            messages.append(message)
    if messages and stop:
        trainer.should_stop = True
    return messages


class StalledLossAlarm(Callback):
    """Sound when a training loss has stayed within `tolerance` (max - min) for `window` iterations.

    A GAN whose discriminator saturates, or whose generator gets no gradient, shows it first as a loss frozen at
    one value; batch noise keeps a training loss moving otherwise. The loss is read every
    `trainer.log_every_n_steps` iterations (nothing is read in between): from the step's outputs when the model
    returns it there (the GAN's `loss/d` and, when it stepped, `loss/g`), else from the values it logged that step.
    Under DDP every process reads its own loss and they sound together, only when it is flat on all of them. It
    sounds once per stall (and again if the loss moves and then stalls anew); it never touches a random number
    generator.

    Args:
        loss: the logged name, e.g. `loss/d` (GANs), `loss/total` (VAE).
        window: iterations the loss must stay flat before the alarm sounds.
        tolerance: the span (max - min) of the read values under which the loss counts as flat.
        stop: also stop training (with the usual checkpoint) when it sounds.
    """

    def __init__(self, loss: str = "loss/d", window: int = 1000, tolerance: float = 1e-4, stop: bool = False) -> None:
        if window < 1 or tolerance < 0:
            raise GenlabError(f"StalledLossAlarm needs window >= 1 and tolerance >= 0, got window {window} and"
                              f" tolerance {tolerance}")
        self.loss, self.window, self.tolerance, self.stop = loss, window, tolerance, stop
        self.seen: deque[tuple[int, float]] = deque()  # (iteration, value), the oldest at least `window` ago
        self.sounded = False
        self.first_read: int | None = None

    def read(self, trainer: L.Trainer, outputs: Any, iteration: int) -> float | None:
        """This step's value of the loss; one line if none was seen for a whole window (a wrong name)."""
        value = outputs.get(self.loss) if isinstance(outputs, dict) else None
        if value is None:
            value = trainer.callback_metrics.get(self.loss)
        self.first_read = iteration if self.first_read is None else self.first_read
        if value is None and not self.seen and iteration - self.first_read >= self.window:
            raise GenlabError(f"StalledLossAlarm: no loss {self.loss!r} in {self.window} iterations; the model logs"
                              f" {sorted(trainer.callback_metrics)}: fix the alarm's loss name")
        return None if value is None else float(value)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Read the loss on the iterations it is logged, keep a window of values, and decide."""
        iteration = int(getattr(pl_module, "iteration", trainer.global_step))
        if iteration % max(trainer.log_every_n_steps, 1):  # nothing to read (and no host sync) in between
            return
        value = self.read(trainer, outputs, iteration)
        if value is None:
            return
        self.seen.append((iteration, value))
        while len(self.seen) > 1 and iteration - self.seen[1][0] >= self.window:  # keep one at least a window old
            self.seen.popleft()
        values = [seen for _, seen in self.seen]
        flat = iteration - self.seen[0][0] >= self.window and max(values) - min(values) <= self.tolerance
        flat = bool(trainer.strategy.reduce_boolean_decision(flat, all=True))  # the same decision on every process
        self.report(trainer, iteration, flat, values[-1])

    def report(self, trainer: L.Trainer, iteration: int, flat: bool, value: float) -> None:
        """The `alarm/<loss>` curve, one line when a stall begins, and the stop if asked."""
        warning = None
        if flat and not self.sounded:
            action = "stopping" if self.stop else "training goes on"
            warning = (f"{self.loss} stayed at {value:.4g} (within {self.tolerance:g}) for {self.window} iterations"
                       f" (a network gets no gradient?); {action}")
            trainer.should_stop = trainer.should_stop or self.stop
        record_alarm(trainer, self.loss, iteration, flat, warning)
        self.sounded = flat
