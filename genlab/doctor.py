"""`genlab doctor --config experiments/X.yaml`: before anyone trains, check what the run will need, one line each.

Checks, in order: the configuration builds; the data loads (files, sizes, headers: the data module's own checks);
every score the config computes can be computed (classifier checkpoints load and fit the data, Inception weights
are present and official, nothing is downloaded); the log folder is writable; the disk has room for the
checkpoints; and which fast path (precision, memory layout) this machine gives the model. Each line says `ok` or
what to do; the exit status is 0 when every check passed, 2 otherwise.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genlab.data.base import TensorDataModule
from genlab.errors import GenlabError, first_line


def _line(ok: bool, item: str, text: str) -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {item}: {text}", flush=True)
    return ok


def _check(item: str, check: Callable[[], str]) -> bool:
    try:
        return _line(True, item, check())
    except GenlabError as error:
        return _line(False, item, str(error))
    except Exception as error:  # noqa: BLE001 - the doctor reports, it does not crash
        return _line(False, item, f"{type(error).__name__}: {first_line(error, 200)}")


def _data(datamodule: Any) -> str:
    datamodule.prepare_data()
    datamodule.setup("fit")
    counts = ", ".join(f"{name} {len(datamodule.split(name).samples):,}" for name in ("train", "val", "test")
                       if isinstance(datamodule, TensorDataModule))
    return f"{type(datamodule).__name__} loads ({counts or 'sizes unknown'}), samples of shape" \
           f" {tuple(getattr(datamodule, 'data_shape', ()))}"


def _scores(trainer: Any, model: Any, datamodule: Any) -> list[tuple[str, Callable[[], str]]]:
    """One check per score suite of the config's GenerativeMetrics callbacks (nothing downloaded)."""
    from genlab.callbacks.metrics import GenerativeMetrics

    checks = []
    for callback in (c for c in trainer.callbacks if isinstance(c, GenerativeMetrics)):
        evaluation = callback.evaluation
        for suite in evaluation.suites:
            def check(suite: Any = suite, callback: Any = callback, evaluation: Any = evaluation) -> str:
                suite.download = False
                # as many real images as samples: the count the run will have is checked when it starts
                suite.prepare(evaluation.plan(datamodule, model, callback.real_split, evaluation.num_samples))
                settings = suite.settings()
                source = settings.get("checkpoint") or settings.get("weights") or settings.get("network", "")
                return f"{suite.name} scores can be computed ({source})"
            checks.append((f"scores {suite.name}", check))
    return checks + _memorisation_checks(trainer)


def _memorisation_checks(trainer: Any) -> list[tuple[str, Callable[[], str]]]:
    """The classifier of each `Memorisation` callback whose feature space it measures in (nothing trained)."""
    from genlab.callbacks.memorisation import Memorisation
    from genlab.metrics.classifier_checkpoint import load_classifier

    def check(path: str) -> str:
        return f"memorisation distances can be computed in {load_classifier(path).path}'s features"

    return [("memorisation", lambda path=callback.classifier_path: check(path))
            for callback in trainer.callbacks if isinstance(callback, Memorisation) and callback.classifier_path]


def _log_folder(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder):
        pass
    return f"{folder.resolve()} is writable"


def _disk(folder: Path, model: torch.nn.Module) -> str:
    parameters = sum(parameter.numel() for parameter in model.parameters())
    checkpoint = 3 * 4 * parameters  # fp32 weights and Adam's two moments
    needed = 4 * checkpoint  # last, previous, the epoch's, and one being written
    free = shutil.disk_usage(folder if folder.exists() else Path.cwd()).free
    text = f"{free / 1e9:.1f} GB free; a checkpoint of this model is about {checkpoint / 1e6:.0f} MB"
    if free < 2 * needed:
        raise GenlabError(f"{text}, and a run keeps up to 4 at once: free at least {math.ceil(2 * needed / 1e6)} MB")
    return text


def run(argv: list[str]) -> int:
    """The doctor's checks for `genlab doctor ARGS` (the arguments of `genlab fit`); returns the exit status."""
    from genlab.cli import GenlabCLI

    folder = Path("lightning_logs")
    if "--config" not in argv and not any(arg.startswith("--config=") for arg in argv):
        print("genlab doctor: pass the run's config, e.g. genlab doctor --config experiments/dcgan_emoji.yaml",
              file=sys.stderr)
        return 2
    built: dict[str, Any] = {}

    def configuration() -> str:
        command_line, sys.argv = sys.argv, sys.argv[:1]  # the arguments are given as `args`: no LightningCLI warning
        try:
            built["cli"] = GenlabCLI(args=[*argv, "--trainer.logger=false"], run=False)
        finally:
            sys.argv = command_line
        return f"{type(built['cli'].model).__name__} on {type(built['cli'].datamodule).__name__}"

    results = [_check("config", configuration)]
    if "cli" in built:
        cli = built["cli"]
        results.append(_check("data", lambda: _data(cli.datamodule)))
        if results[-1]:
            results += [_check(item, check) for item, check in _scores(cli.trainer, cli.model, cli.datamodule)]
        results.append(_check("log folder", lambda: _log_folder(folder)))
        results.append(_check("disk", lambda: _disk(folder, cli.model)))
        results.append(_check("fast path", lambda: (
            f"precision {cli.trainer.precision}, memory format {cli.config.get('memory_format', 'contiguous')} on CPU"
            f" {torch.backends.cpu.get_cpu_capability()}" + (", CUDA available" if torch.cuda.is_available() else ""))))
    return 0 if all(results) else 2
