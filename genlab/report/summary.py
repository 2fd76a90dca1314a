"""What a run amounts to, in words and numbers: the header facts, each score's protocol, the warnings.

Kept apart from the HTML so the comparison of several runs and the tests use the same facts the page shows.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from genlab import run_layout as layout
from genlab.report.events import iterations_per_second
from genlab.report.reading import Run

# record fields that are the numbers or the position, not the protocol
NOT_PROTOCOL = {"scores", "real_values", "iteration", "step", "epoch", "label_histogram", "alarms"}
# settings that change how a score is computed but not its value (checked on 1 vs N processes,
# docs/guide.md: Evaluation); also `fast_path.*`, how the weights were trained (like trained_in_precision: a
# property of the model scored)
NOT_IDENTITY = {"sampling.device", "sampling.processes", "sampling.precision", "trained_in_precision",
                "trained_with_fast_paths"}
COLLAPSE_TV = 0.9


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists → {"a.b.0.c": leaf}; lists of plain values stay one leaf."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
    return flat


def protocol(record: dict[str, Any]) -> dict[str, Any]:
    """Everything a score record holds besides its numbers, flattened (long lists shown by their length)."""
    flat = flatten({key: value for key, value in record.items() if key not in NOT_PROTOCOL})
    return {key: f"[{len(value)} values]" if isinstance(value, list) and len(value) > 12 else value
            for key, value in flat.items() if not key.startswith("label_histogram")}


def protocol_identity(record: dict[str, Any]) -> str:
    """The part of a record's protocol that decides its numbers: two records compare only when these agree."""
    kept = {key: value for key, value in protocol(record).items()
            if key not in NOT_IDENTITY and key != "stage" and not key.startswith(("sampling.noise", "fast_path."))}
    return json.dumps(kept, sort_keys=True, default=str)


def logged_iterations(run: Run) -> int | None:
    """The newest iteration the event files or score records reached."""
    steps = [series.steps[-1] for series in run.events.scalars.values() if series.steps]
    steps += [record["iteration"] for record in run.records if isinstance(record.get("iteration"), int)]
    return max(steps) if steps else None


def checkpoint_iterations(run: Run) -> int | None:
    count = (run.checkpoint or {}).get(layout.ITERATIONS_KEY)
    return count if isinstance(count, int) else None


def iterations(run: Run) -> int | None:
    """Iterations (training batches) done: the newest the checkpoint, the curves or the records reached."""
    known = [count for count in (checkpoint_iterations(run), logged_iterations(run)) if count is not None]
    return max(known) if known else None


def duration(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours} h {minute:02d} min" if hours else f"{minute} min {second:02d} s" if minute else f"{second} s"


def versions(run: Run) -> str:
    """genlab / torch / lightning versions as recorded by the run (RunReport's environment.jsonl), else what
    the config and checkpoint name."""
    if run.environments:
        seen = dict.fromkeys(", ".join(f"{name} {env[name]}" for name in ("genlab", "torch", "lightning")
                                       if name in env)
                             for env in run.environments)
        return "; then ".join(seen)
    known = [run.config_header] if run.config_header else []
    if run.checkpoint and run.checkpoint.get("pytorch-lightning_version"):
        known.append(f"checkpoint written by lightning {run.checkpoint['pytorch-lightning_version']}")
    return ", ".join(known) + ("; genlab and torch versions not recorded" if known else "not recorded")


def _get(config: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None  # type: ignore[assignment]
    return config


def device_and_precision(run: Run) -> str:
    parts = [f"{label} {value}" for label, value in (
        ("accelerator", _get(run.config, "trainer.accelerator")), ("precision", _get(run.config, "trainer.precision")),
        ("memory format", _get(run.config, "memory_format")), ("devices", _get(run.config, "trainer.devices")))
        if value is not None]
    devices = sorted({str(r.get("sampling", {}).get("device")) for r in run.records if r.get("sampling")})
    if devices:
        parts.append(f"scored on {', '.join(devices)}")
    if run.checkpoint and run.checkpoint.get(layout.PRECISIONS_KEY):
        parts.append(f"trained in {', '.join(map(str, run.checkpoint['genlab_training_precisions']))}")
    return "; ".join(parts) or "not recorded"


def header(run: Run) -> list[tuple[str, str]]:
    """The facts at the top of a run's section, as (label, text) rows."""
    done = iterations(run)
    sessions = run.events.sessions
    speed = iterations_per_second(sessions)
    checkpoint = "none"
    if run.checkpoint_name:
        epoch = (run.checkpoint or {}).get("epoch")
        at = checkpoint_iterations(run)
        checkpoint = f"checkpoints/{run.checkpoint_name}" + (f" (epoch {epoch}, iteration {at})"
                                                             if at is not None else "")
    rows = [
        ("experiment", run.folder.parent.name), ("run folder", run.name),
        ("model", str(_get(run.config, "model.class_path") or "unknown")),
        ("data", str(_get(run.config, "data.class_path") or "unknown")),
        ("seed", str(run.config.get("seed_everything", "unknown"))),
        ("iterations done", f"{done:,}" if done is not None else "unknown"),
        ("wall time", f"{duration(sum(s.seconds for s in sessions))} over {len(sessions)} session(s)"
                      if sessions else "unknown"),
        ("speed", f"{speed:.2f} it/s (from the event files' wall times)" if speed else "unknown"),
        ("device and precision", device_and_precision(run)),
        ("versions", versions(run)),
        ("describes checkpoint", checkpoint),
        ("resumes", ", ".join(run.resumes) if run.resumes else "none"),
    ]
    return rows


def last_record(run: Run, stage: str | None = None) -> dict[str, Any] | None:
    """The newest score record (of `stage`, when given)."""
    records = [record for record in run.records if stage is None or str(record.get("stage")) == stage]
    return records[-1] if records else None


def warnings(run: Run) -> list[str]:
    """What a person should not miss: divergence, skipped updates, collapse, scores under mixed protocols."""
    found = []
    for name in run.checkpoint_files:
        if match := re.fullmatch(r"diverged-iteration_(\d+)\.ckpt", name):
            found.append(f"the run diverged at iteration {int(match[1]):,}: checkpoints/{name} holds the last good"
                         " state (losses or gradients turned NaN or infinite)")
    skipped = (run.checkpoint or {}).get(layout.SKIPPED_KEY) or 0
    series = run.events.scalars.get("divergence/skipped_updates")
    skipped = max(skipped, int(max(series.values)) if series and series.values else 0)
    if skipped:
        found.append(f"{skipped:,} non-finite updates were skipped (on_divergence: skip)")
    saved, logged = checkpoint_iterations(run), logged_iterations(run)
    if saved is not None and logged is not None and saved < logged:
        found.append(f"checkpoints/{run.checkpoint_name} holds iteration {saved:,}, but the run went on to iteration"
                     f" {logged:,}: a resume starts again from {saved:,}, and scores of these weights are not those"
                     " of the end of the curves")
    found += _collapse_warnings(run) + _alarm_warnings(run) + _protocol_warnings(run)
    bad = [tag for tag, curve in run.events.scalars.items() if any(not math.isfinite(v) for v in curve.values)]
    if bad:
        found.append(f"non-finite values (NaN or infinite) logged in: {', '.join(sorted(bad))}")
    return found


def _collapse_warnings(run: Run) -> list[str]:
    record = last_record(run)
    scores = (record or {}).get("scores", {})
    return [f"{name} = {value:.3f} at iteration {record.get('iteration')} (near 1): the samples fall into few classes,"
            " a sign of mode collapse" for name, value in scores.items()
            if name.split("@")[0].endswith("label_tv") and isinstance(value, (int, float)) and value >= COLLAPSE_TV]


def _alarm_warnings(run: Run, shown: int = 5) -> list[str]:
    """The alarms GenerativeMetrics sounded (its `alarms` setting), newest last; at most `shown` of them."""
    sounded = [f"alarm at iteration {record.get('iteration')}: {message}" for record in run.records
               for message in (record.get("alarms") or []) if isinstance(message, str)]
    earlier = [f"{len(sounded) - shown} earlier alarms"] if len(sounded) > shown else []
    return earlier + sounded[-shown:]


def _protocol_warnings(run: Run) -> list[str]:
    found = []
    for stage in sorted({str(record.get("stage")) for record in run.records}):
        identities = {protocol_identity(r) for r in run.records if str(r.get("stage")) == stage}
        if len(identities) > 1:
            found.append(f"the {stage} scores of this run were measured under {len(identities)} different protocols"
                         " (the settings changed, e.g. on resume): compare them only within one protocol")
    return found
