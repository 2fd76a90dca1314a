"""What a finished trial run says: its objective score, or why it must never be chosen (collapse, divergence).

Torch-free: it reads the run folder's records (`metrics.jsonl`, `toy/metrics.jsonl`) and checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genlab import run_layout as layout
from genlab.report.summary import COLLAPSE_TV


def records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a cut last line (a killed process): the earlier records stand
        if isinstance(record, dict):
            found.append(record)
    return found


def final_scores(run: Path) -> dict[str, float]:
    """The scores of the run's last evaluation during fit (`metrics.jsonl`), and the toy GAN's last measures as
    `toy/<name>`."""
    scores: dict[str, float] = {}
    fit = [record for record in records(run / layout.SCORE_RECORDS) if record.get("stage") == "fit"]
    if fit:
        scores |= {name: value for name, value in fit[-1].get("scores", {}).items() if isinstance(value, (int, float))}
    toy = records(run / layout.TOY_RECORDS)
    if toy:
        scores |= {f"toy/{name}": value for name, value in toy[-1].items()
                   if name != "iteration" and isinstance(value, (int, float))}
    return scores


def evaluations(run: Path, objective: str) -> list[tuple[int, float]]:
    """(iteration, value) of `objective` in every evaluation during fit written so far."""
    found = []
    for record in records(run / layout.SCORE_RECORDS):
        value = record.get("scores", {}).get(objective)
        if (record.get("stage") == "fit" and isinstance(record.get("iteration"), int)
                and isinstance(value, (int, float))):
            found.append((record["iteration"], float(value)))
    return found


def exclusion(run: Path, exit_code: int) -> str | None:
    """Why this run must not count (a divergence, a collapse alarm, a collapsed label distribution, a failed
    run), or None."""
    diverged = sorted((run / layout.CHECKPOINTS).glob(layout.DIVERGED_CHECKPOINTS))
    if diverged:
        return f"diverged ({diverged[0].stem})"
    for record in records(run / layout.SCORE_RECORDS):
        if record.get("alarms"):
            return f"collapse alarm at iteration {record.get('iteration')}: {'; '.join(record['alarms'])}"
    scores = final_scores(run)
    collapsed = [name for name, value in scores.items() if name.split("@")[0].endswith("label_tv")
                 and value >= COLLAPSE_TV]
    if collapsed:
        return f"collapsed ({collapsed[0]} = {scores[collapsed[0]]:.3f} >= {COLLAPSE_TV})"
    if exit_code != 0:
        return f"the run failed (exit status {exit_code}; its output: {run.parent / (run.name + '.log')})"
    return None
