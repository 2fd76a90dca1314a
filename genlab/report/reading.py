"""A run folder (`lightning_logs/<experiment>/version_N/`) read into one `Run`: what the report shows.

Reading never fails on a damaged part: a corrupt `metrics.jsonl` line, an unreadable checkpoint or a truncated
event file becomes a line in `Run.problems`, so a killed run still gets its page. Only a folder that holds
nothing of a run is refused, in one line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab import run_layout as layout
from genlab.errors import GenlabError, first_line
from genlab.report.checkpoint_file import Opaque, checkpoint_values
from genlab.report.events import Events, read_events

RUN_MARKERS = (layout.CONFIG, "hparams.yaml", layout.SCORE_RECORDS, layout.CHECKPOINTS, layout.SAMPLES, layout.TOY)
# figure folders and their files (prediction PNGs are one per test item: only their grid)
MAX_FIGURES_PER_KIND = 6


@dataclass
class Run:
    """Everything a report page shows of one run folder."""

    folder: Path
    config: dict[str, Any] = field(default_factory=dict)
    config_header: str = ""
    resumes: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    toy_records: list[dict[str, Any]] = field(default_factory=list)
    memorisation_records: list[dict[str, Any]] = field(default_factory=list)
    environments: list[dict[str, Any]] = field(default_factory=list)
    events: Events = field(default_factory=Events)
    grids: list[Path] = field(default_factory=list)
    checkpoint_files: list[str] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    checkpoint_name: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.folder.parent.name}/{self.folder.name}"


def check_run_folder(folder: Path) -> None:
    """Refuse, in one line, a path that is not a run folder (and say which one to pass instead)."""
    if not folder.is_dir():
        raise GenlabError(f"{folder} is not a folder: pass a run folder, lightning_logs/<experiment>/version_N")
    if any((folder / marker).exists() for marker in RUN_MARKERS) or any(folder.glob("events.out.tfevents.*")):
        return
    versions = sorted(path.name for path in folder.glob("version_*") if path.is_dir())
    if versions:
        raise GenlabError(f"{folder} is an experiment folder, not a run: pass one of its runs, e.g."
                          f" {folder / versions[-1]}")
    what = "empty: the run has written nothing yet" if not any(folder.iterdir()) else "not a run folder"
    raise GenlabError(f"{folder} is {what} (no config.yaml, events, metrics.jsonl or checkpoints/): pass"
                      " lightning_logs/<experiment>/version_N of a run that has started")


def read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; each unreadable line is one problem (a crash can cut the last)."""
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{path.name} line {number} is not valid JSON (skipped)")
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def score_records(records: list[dict[str, Any]], problems: list[str], name: str = layout.SCORE_RECORDS
                  ) -> list[dict[str, Any]]:
    """The records shaped as GenerativeMetrics writes them (scores and real values as objects); others named."""
    kept = []
    for number, record in enumerate(records, 1):
        if isinstance(record.get("scores", {}), dict) and isinstance(record.get("real_values") or {}, dict):
            kept.append(record)
        else:
            problems.append(f"{name} record {number} is not a score record (skipped)")
    return kept


def read_config(folder: Path, run: Run) -> None:
    """`config.yaml` (and the names of the `config.resume-N.yaml` beside it)."""
    import yaml

    run.resumes = sorted((path.name for path in folder.glob("config.resume-*.yaml")),
                         key=lambda name: int(re.sub(r"\D", "", name) or 0))
    path = folder / layout.CONFIG
    if not path.is_file():
        run.problems.append("config.yaml is missing: the configuration is unknown")
        return
    text = path.read_text(errors="replace")
    run.config_header = text.splitlines()[0].lstrip("# ").strip() if text.startswith("#") else ""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        run.problems.append(f"config.yaml could not be read ({first_line(error)})")
        return
    run.config = loaded if isinstance(loaded, dict) else {}


def read_checkpoint(folder: Path, run: Run) -> None:
    """Names in `checkpoints/`, and the counters of the checkpoint the run's weights stand in (last.ckpt)."""
    checkpoints = folder / layout.CHECKPOINTS
    run.checkpoint_files = sorted(path.name for path in checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    for name in ("last.ckpt", "previous.ckpt"):
        if name in run.checkpoint_files:
            run.checkpoint_name = name
            break
    if run.checkpoint_name is None:
        return
    path = checkpoints / run.checkpoint_name
    try:
        loaded = checkpoint_values(path)
        if loaded is None:  # torch's legacy format: torch reads it
            import torch

            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - reported on the page
        run.problems.append(f"checkpoints/{run.checkpoint_name} is truncated or corrupt, or not a Lightning"
                            f" checkpoint ({type(error).__name__}: {first_line(error, 80)})")
        return
    if not isinstance(loaded, dict):
        run.problems.append(f"checkpoints/{run.checkpoint_name} is not a Lightning checkpoint (no dict inside)")
        return
    run.checkpoint = {key: value for key, value in loaded.items()
                      if isinstance(value, (int, float, str, list)) and key != "optimizer_states"
                      and not (isinstance(value, list) and any(isinstance(item, Opaque) for item in value))}


def read_run(folder: Path | str) -> Run:
    """Read one run folder; raises GenlabError only when `folder` is not a run at all."""
    folder = Path(folder)
    check_run_folder(folder)
    run = Run(folder=folder.resolve())
    read_config(folder, run)
    read_checkpoint(folder, run)
    if (folder / layout.SCORE_RECORDS).is_file():
        run.records = score_records(read_jsonl(folder / layout.SCORE_RECORDS, run.problems), run.problems)
    if (folder / layout.MEMORISATION_RECORDS).is_file():
        found = read_jsonl(folder / layout.MEMORISATION_RECORDS, run.problems)
        run.memorisation_records = score_records(found, run.problems, layout.MEMORISATION_RECORDS)
    if (folder / layout.TOY_RECORDS).is_file():
        run.toy_records = read_jsonl(folder / layout.TOY_RECORDS, run.problems)
    if (folder / layout.ENVIRONMENT_RECORDS).is_file():
        run.environments = read_jsonl(folder / layout.ENVIRONMENT_RECORDS, run.problems)
    run.events = read_events(folder)
    run.problems += run.events.problems
    run.grids = sorted((folder / layout.SAMPLES).glob("iteration_*.png"))
    return run


def figure_files(folder: Path) -> dict[str, list[list[Path]]]:
    """The figures besides the grids, by kind (interpolations, toy plots, denoising triplets, label histograms,
    the prediction grid), each kind as series: the files of one name over iterations (`…_iteration_NNNNNNN`),
    oldest first, at most `MAX_FIGURES_PER_KIND` series a kind."""
    found: dict[str, list[list[Path]]] = {}
    others = sorted(path.name for path in folder.iterdir() if path.is_dir() and path.name not in layout.NOT_FIGURES
                    and path.name not in layout.FIGURE_PATTERNS and any(path.glob("*.png"))) if folder.is_dir() else []
    for kind in [*layout.FIGURE_PATTERNS, *others]:
        pattern = layout.FIGURE_PATTERNS.get(kind, "*.png")
        files = sorted((folder / kind).glob(pattern)) if (folder / kind).is_dir() else []
        series: dict[str, list[Path]] = {}
        for path in files:  # zero-padded iterations: sorted names are in iteration order
            series.setdefault(re.sub(r"iteration_\d+", "", path.stem), []).append(path)
        if series:
            found[kind] = [series[name] for name in sorted(series)][:MAX_FIGURES_PER_KIND]
    return found
