"""Score alarms: one warning line when a score crosses its threshold during training, e.g. mode collapse seen as
`classifier/label_tv` rising or `classifier/recall` / `classifier/coverage` falling (`GenerativeMetrics(alarms=…)`).

Every process computes the same scores, so every process takes the same decision to stop: no extra collective.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import lightning as L

from genlab.errors import GenlabError


@dataclass(frozen=True)
class ScoreAlarm:
    """Sound when `score` (a full score name, e.g. `classifier/recall`) goes above `above` or below `below`."""

    score: str
    above: float | None = None
    below: float | None = None

    def check(self) -> None:
        """One line when the alarm cannot fire or could fire both ways."""
        if (self.above is None) == (self.below is None):
            raise GenlabError(f"the alarm on {self.score!r} needs exactly one of above or below, e.g."
                              f" {{score: {self.score}, below: 0.2}}")

    def message(self, scores: dict[str, float]) -> str | None:
        """The warning if the alarm sounds for these scores, else None."""
        if self.score not in scores:
            raise GenlabError(f"no score {self.score!r} to watch: the evaluation gives {sorted(scores)}; fix the"
                              " alarm's score name (or turn on the score, e.g. manifold_k for recall and coverage)")
        value = scores[self.score]
        if self.above is not None and value > self.above:
            return f"{self.score} = {value:.4g} above {self.above:g}"
        if self.below is not None and value < self.below:
            return f"{self.score} = {value:.4g} below {self.below:g}"
        return None


def sound_alarms(trainer: L.Trainer, alarms: list[ScoreAlarm], scores: dict[str, float], iteration: int,
                 stop: bool) -> list[str]:
    """Check every alarm: print one line per alarm that sounds (rank 0), log `alarm/<score>` as 1 or 0 to the
    loggers (a step in the curve marks when), and ask the trainer to stop if `stop`; returns the messages."""
    messages = []
    for alarm in alarms:
        message = alarm.message(scores)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({f"alarm/{alarm.score}": float(message is not None)}, step=iteration)
        if message is None:
            continue
        messages.append(message)
        if trainer.is_global_zero:
            action = "stopping (stop_on_alarm)" if stop else "training goes on"
            print(f"genlab: warning: iteration {iteration}: {message} (mode collapse?); {action}", file=sys.stderr,
                  flush=True)
    if messages and stop:
        trainer.should_stop = True
    return messages
