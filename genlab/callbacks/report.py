"""`RunReport`: the run's HTML report (`report.html` in the run folder) at the end of fit and of test.

It writes in `teardown`, after every callback's end-of-fit and end-of-test hooks, so its place in the callback
list does not matter (the experiments list it first, so that `--trainer.callbacks.<arg>=` still reaches their
own last callback).

The report is a by-product: a failure to write it is one warning line, never a crashed or failed run. Its
`environment.jsonl` (one line per fit or test started: versions, device, precision) is what the report's
header quotes, since nothing else in a run folder records the genlab and torch versions.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

from genlab import run_layout
from genlab.atomic_files import append_jsonl
from genlab.callbacks.run_files import run_dir, writes_files
from genlab.errors import first_line


def environment(trainer: L.Trainer, stage: str) -> dict[str, Any]:
    """Versions and hardware of this start of the run."""
    import lightning
    import torch

    from genlab.report import generator_versions

    versions = dict(item.split(" ", 1) for item in generator_versions().split(", ") if " " in item)
    return {"stage": stage, "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "genlab": versions.get("genlab", "unknown"), "torch": torch.__version__, "lightning": lightning.__version__,
            "device": str(trainer.strategy.root_device), "precision": str(trainer.precision),
            "processes": trainer.world_size}


class RunReport(L.Callback):
    """Writes `report.html` into the run folder when fit or test ends (rank zero only; `genlab report RUN_DIR`
    regenerates it any time, also for a killed run)."""

    def _quietly(self, action: str, trainer: L.Trainer, work: Any) -> None:
        if not writes_files(trainer):  # rank zero, outside smoke tests
            return
        try:
            work()
        except Exception as error:  # noqa: BLE001 - the report never fails the run
            rank_zero_warn(f"genlab: {action} failed ({type(error).__name__}: {first_line(error, 200)});"
                           f" the run is unaffected: `genlab report {run_dir(trainer)}` retries")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage in ("fit", "test"):
            self._quietly("recording the environment", trainer,
                          lambda: append_jsonl(run_dir(trainer) / run_layout.ENVIRONMENT_RECORDS,
                                               environment(trainer, stage)))

    def write(self, trainer: L.Trainer) -> None:
        from genlab.report import write_report

        for logger in trainer.loggers:  # the event files hold the last curves before they are read
            logger.save()
            if hasattr(getattr(logger, "experiment", None), "flush"):
                logger.experiment.flush()
        folder = run_dir(trainer)
        write_report([folder], folder / run_layout.REPORT)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # after every callback's on_fit_end / on_test_end: the figures they draw then are on the page
        if stage in ("fit", "test"):
            self._quietly("writing report.html", trainer, lambda: self.write(trainer))
