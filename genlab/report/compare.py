"""Several runs side by side: what differs in their configs, their last scores, and whether those compare.

Scores are set side by side only as numbers; when their protocols differ the page says so and ranks nothing, and
when the runs differ only by seed it adds mean ± standard deviation over the seeds.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from genlab.report.reading import Run
from genlab.report.summary import flatten, last_record, protocol, protocol_identity

# keys every run has its own value of, whatever the experiment: never a "difference"
PER_RUN_KEYS = ("trainer.logger.init_args.version",)
SEED_KEYS = ("seed_everything",)
TOY_MEASURES = ("curve_distance", "sliced_wasserstein")  # the toy GAN's own fit measures (toy/metrics.jsonl)
MISSING = "(not set)"


@dataclass
class Comparison:
    """What the comparison section shows."""

    config_differences: dict[str, list[str]] = field(default_factory=dict)
    only_seed_differs: bool = False
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)
    protocol_differences: list[str] = field(default_factory=list)
    unscored: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def config_differences(runs: list[Run]) -> dict[str, list[str]]:
    """Flattened config keys whose values are not the same in every run (a key one run lacks differs)."""
    flats = [flatten(run.config) for run in runs]
    keys = sorted(set().union(*flats) - set(PER_RUN_KEYS))
    differing = {}
    for key in keys:
        values = [_text(flat[key]) if key in flat else MISSING for flat in flats]
        if len(set(values)) > 1:
            differing[key] = values
    return differing


def protocol_differences(records: list[dict[str, Any]]) -> list[str]:
    """Protocol keys whose values differ between the records (empty: the scores compare)."""
    if len({protocol_identity(record) for record in records}) <= 1:
        return []
    flats = [protocol(record) for record in records]
    keys = sorted(set().union(*flats))
    return [key for key in keys if len({_text(flat.get(key, MISSING)) for flat in flats}) > 1
            and not key.startswith(("sampling.device", "sampling.processes", "sampling.precision", "trained_in",
                                    "fast_path."))]


def compare(runs: list[Run]) -> Comparison:
    """The comparison of `runs` (two or more), from each run's newest fit record (else its newest record)."""
    result = Comparison(config_differences=config_differences(runs))
    result.only_seed_differs = (all(run.config for run in runs) and bool(result.config_differences)
                                and set(result.config_differences) <= set(SEED_KEYS)
                                and not any(MISSING in values for values in result.config_differences.values()))
    records = [compared_record(run) for run in runs]
    result.unscored = [run.name for run, record in zip(runs, records) if record is None]
    scored = [record for record in records if record is not None]
    result.protocol_differences = protocol_differences(scored)
    names = list(dict.fromkeys(name for record in scored for name in record.get("scores", {})))
    for name in names:
        result.scores[name] = [_number((record or {}).get("scores", {}).get(name)) for record in records]
    if result.only_seed_differs and not result.protocol_differences:
        for name, values in result.scores.items():
            present = [value for value in values if value is not None]
            if len(present) >= 2:
                result.spread[name] = (statistics.fmean(present), statistics.stdev(present))
    return result


def compared_record(run: Run) -> dict[str, Any] | None:
    """The record a run is compared by: its newest fit record (else its newest), or for a toy GAN run without
    one, its last toy measures as `toy/<measure>` (all toy runs share their one protocol)."""
    record = last_record(run, "fit") or last_record(run)
    if record is None and run.toy_records:
        last = run.toy_records[-1]
        record = {"scores": {f"toy/{name}": last[name] for name in TOY_MEASURES if name in last}}
    return record


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
