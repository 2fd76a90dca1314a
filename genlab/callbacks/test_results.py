"""`TestResults`: what `genlab test` printed, also as `test_results.json` in its run folder, for scripts."""

from __future__ import annotations

import json
import math
from typing import Any

import lightning as L

from genlab.atomic_files import write_bytes
from genlab.callbacks.run_files import run_dir


class TestResults(L.Callback):
    """Writes the test metrics Lightning prints (`test/…`) and the iteration of the tested weights as JSON.

    `genlab test` adds it; `benchmarks/reproduce.py` reads it (scores with their protocols are in
    `metrics.jsonl` beside it when the config has a `GenerativeMetrics` callback).
    """

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        results: dict[str, Any] = {"iteration": int(getattr(pl_module, "trained_iterations", 0))}
        for name, value in trainer.callback_metrics.items():
            number = float(value)
            results[name] = number if math.isfinite(number) else None
        text = json.dumps(results, indent=1, sort_keys=True) + "\n"
        write_bytes(run_dir(trainer) / "test_results.json", text.encode())
