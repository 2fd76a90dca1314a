"""Scalar curves and training speed from a run's TensorBoard event files, read with TensorBoard's own reader.

A resumed run appends a new event file to the same folder and logs again the iterations after its checkpoint;
the later file's points win from its first step on, so each curve is the one the finished run stands for.
"""

from __future__ import annotations

import logging
import math
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# what EventAccumulator keeps of each kind: every scalar, one of anything else (images are only skipped over)
SIZE_GUIDANCE = {"scalars": 0, "images": 1, "audio": 1, "histograms": 1, "compressedHistograms": 1, "tensors": 1}
IGNORED_TAGS = {"hp_metric", "epoch"}
MAX_SCALARS_PER_TAG = 2000


@dataclass
class Series:
    """One scalar tag over iterations."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class Session:
    """One event file: a start of `genlab fit` (the first or a resume), its wall-clock span and steps."""

    file: str
    first_wall: float
    last_wall: float
    first_step: int
    last_step: int

    @property
    def seconds(self) -> float:
        return max(0.0, self.last_wall - self.first_wall)


@dataclass
class Events:
    """Everything the report takes from the event files, and what could not be read."""

    scalars: dict[str, Series] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _classify(data: bytes) -> tuple[str, str | None, bool]:
    """(kind, scalar tag, finite) of one record: "picture" (image, audio, histogram: the report reads none),
    "scalar", or "other" (kept as it is, e.g. the file version or hparams)."""
    from tensorboard.compat.proto import event_pb2

    try:
        values = event_pb2.Event.FromString(data).summary.value
    except Exception:  # noqa: BLE001 - left for TensorBoard's reader to judge
        return "other", None, True
    if any(value.HasField(kind) for value in values for kind in ("image", "audio", "histo")):
        return "picture", None, True
    if len(values) == 1 and values[0].HasField("simple_value"):
        return "scalar", values[0].tag, math.isfinite(values[0].simple_value)
    return "other", None, True


def _framed(data: bytes) -> tuple[list[tuple[int, int]], str | None]:
    """(start, end) of each whole record, and why the file is not whole (None: it is).

    TensorBoard's reader stops silently at a partial record (a killed writer leaves one), so the report checks the
    framing itself: each record is an 8-byte length, a 4-byte CRC, the data and a 4-byte CRC.
    """
    spans, offset = [], 0
    while offset < len(data):
        if offset + 12 > len(data):
            return spans, f"truncated after {offset:,} bytes (a partial record: the run was probably killed)"
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        if offset + 16 + length > len(data):
            kind = "not an event file" if offset == 0 else f"truncated after {offset:,} bytes"
            return spans, f"{kind} (a record runs past the end of the file)"
        spans.append((offset, offset + 16 + length))
        offset += 16 + length
    return spans, None


def readable_records(path: Path) -> tuple[bytes, str | None]:
    """The records the report's reader needs, and why the file is not whole (None: it is).

    TensorBoard's reader checks every record's CRC in pure Python (about a second per 2 MB, or per 15,000
    scalars, on a 2-core CPU), and a run's event file is mostly its logged sample grids. The report reads scalars
    only, and draws at most `figures.MAX_POINTS` per curve, so the reader gets no pictures and at most
    `MAX_SCALARS_PER_TAG` points of a tag: evenly spaced, with its first and last and every non-finite one.
    """
    data = path.read_bytes()
    spans, problem = _framed(data)
    kinds = [_classify(data[start + 12:end - 4]) for start, end in spans]
    counts: dict[str, int] = {}
    for kind, tag, _ in kinds:
        if kind == "scalar":
            counts[tag] = counts.get(tag, 0) + 1  # type: ignore[index]
    seen: dict[str, int] = {}
    kept = []
    for (start, end), (kind, tag, finite) in zip(spans, kinds):
        if kind == "scalar":
            index, stride = seen.get(tag, 0), math.ceil(counts[tag] / MAX_SCALARS_PER_TAG)  # type: ignore[index]
            seen[tag] = index + 1  # type: ignore[index]
            if index % stride and index != counts[tag] - 1 and finite:  # type: ignore[index]
                continue
        if kind != "picture":
            kept.append(data[start:end])
    return b"".join(kept), problem


def _read_file(path: Path, records: bytes) -> tuple[dict[str, Series], Session | None]:
    """Scalars of one event file (`records`: see `readable_records`), by TensorBoard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory(prefix="genlab-report-") as scratch:
        copy = Path(scratch) / path.name
        copy.write_bytes(records)
        accumulator = EventAccumulator(str(copy), size_guidance=SIZE_GUIDANCE)
        accumulator.Reload()
    curves: dict[str, Series] = {}
    walls: list[float] = []
    steps: list[int] = []
    for tag in accumulator.Tags().get("scalars", []):
        events = accumulator.Scalars(tag)
        walls += [events[0].wall_time, events[-1].wall_time] if events else []
        if tag not in IGNORED_TAGS and events:
            curves[tag] = Series([event.step for event in events], [float(event.value) for event in events])
            steps += [events[0].step, events[-1].step]
    if not walls or not steps:
        return curves, None
    return curves, Session(path.name, min(walls), max(walls), min(steps), max(steps))


def _merge(into: dict[str, Series], later: dict[str, Series]) -> None:
    """Add a later session's curves: its points replace the earlier ones from its first step on."""
    for tag, series in later.items():
        earlier = into.setdefault(tag, Series())
        start = series.steps[0]
        keep = sum(1 for step in earlier.steps if step < start)
        earlier.steps[keep:], earlier.values[keep:] = series.steps, series.values


def _started_at(path: Path) -> tuple[int, str]:
    """Event files are named `events.out.tfevents.<unix time>.<host>.<pid>.<n>`: order them by that time."""
    stamp = path.name.split(".")[3] if path.name.count(".") >= 3 else ""
    return (int(stamp) if stamp.isdigit() else 0, path.name)


def read_events(folder: Path) -> Events:
    """The run's scalar curves and sessions; unreadable or truncated files are named in `problems`."""
    events = Events()
    files = sorted(folder.glob("events.out.tfevents.*"), key=_started_at)
    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # its own warnings would repeat ours
    for path in files:
        try:
            records, problem = readable_records(path)
            if problem is not None:
                events.problems.append(f"event file {path.name}: {problem}; curves show what it holds before that")
            curves, session = _read_file(path, records)
        except Exception as error:  # noqa: BLE001 - a broken file is reported, not fatal
            events.problems.append(f"event file {path.name} could not be read ({type(error).__name__}: {error})")
            continue
        _merge(events.scalars, curves)
        if session is not None:
            events.sessions.append(session)
    return events


def iterations_per_second(sessions: list[Session]) -> float | None:
    """Training speed over the sessions' own spans (the pauses between a kill and a resume do not count)."""
    steps = sum(session.last_step - session.first_step for session in sessions)
    seconds = sum(session.seconds for session in sessions)
    return steps / seconds if steps > 0 and seconds > 0 else None
