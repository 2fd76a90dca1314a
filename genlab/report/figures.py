"""The pictures of a report as PNG bytes: curves drawn with matplotlib, saved images checked and downscaled.

Size is bounded by construction: at most `MAX_PANELS` curves in one figure, each thinned to `MAX_POINTS`, at most
`FILMSTRIP_FRAMES` grid frames of `THUMBNAIL_WIDTH` pixels, and no embedded image wider than `MAX_WIDTH`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from genlab.report.events import Series

MAX_PANELS = 24
MAX_POINTS = 1000
FILMSTRIP_FRAMES = 8
THUMBNAIL_WIDTH = 140
MAX_WIDTH = 960
LOG_SCALE_SPAN = 100.0  # values spanning at least two decades are drawn on a log scale


class UnreadableImage(Exception):
    """A saved image that is missing or does not decode; the page names it instead of showing it."""


def evenly_spaced(items: list, count: int) -> list:
    """At most `count` items, the first and the last among them, evenly spaced in between."""
    if len(items) <= count:
        return list(items)
    return [items[round(index * (len(items) - 1) / (count - 1))] for index in range(count)]


def wants_log_scale(values: list[float]) -> bool:
    finite = [value for value in values if math.isfinite(value)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) >= LOG_SCALE_SPAN


def _panel(axes, tag: str, series: Series, equilibrium: float | None = None) -> None:
    stride = max(1, math.ceil(len(series.steps) / MAX_POINTS))
    steps, values = series.steps[::stride], series.values[::stride]
    if stride > 1 and series.steps[-1] != steps[-1]:  # the last point always shows
        steps, values = steps + [series.steps[-1]], values + [series.values[-1]]
    axes.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, linewidth=1.2)
    if equilibrium is not None:
        axes.axhline(equilibrium, color="0.4", linestyle="--", linewidth=1)  # D cannot tell real from generated
    if wants_log_scale(values):
        axes.set_yscale("log")
    axes.set_title(tag + (" (log scale)" if wants_log_scale(values) else ""), fontsize=9)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)


def curves_png(scalars: dict[str, Series], equilibria: dict[str, float] | None = None, first: list[str] | None = None
               ) -> tuple[bytes, int, int, int] | None:
    """All curves as small multiples over iterations, in one PNG: (bytes, width, height, curves left out), or
    None when there is no curve; `equilibria` adds a dashed line to the curves that have one; the tags in `first`
    come first (the rest in alphabetical order), so they are drawn when there are more than `MAX_PANELS`."""
    from matplotlib.figure import Figure

    ordered = [*(tag for tag in first or [] if tag in scalars), *sorted(set(scalars) - set(first or []))]
    tags = [tag for tag in ordered if scalars[tag].steps]
    if not tags:
        return None
    shown, columns = tags[:MAX_PANELS], 4
    rows = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(3.3 * columns, 2.4 * rows), dpi=80)  # fixed margins: constrained layout costs seconds
    figure.subplots_adjust(left=0.06, right=0.98, top=1 - 0.3 / (2.4 * rows), bottom=0.45 / (2.4 * rows),
                           wspace=0.3, hspace=0.55)
    for index, tag in enumerate(shown):
        axes = figure.add_subplot(rows, columns, index + 1)
        _panel(axes, tag, scalars[tag], (equilibria or {}).get(tag))
        if index >= len(shown) - columns:
            axes.set_xlabel("iteration", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    width, height = (round(size * figure.dpi) for size in figure.get_size_inches())
    return buffer.getvalue(), width, height, len(tags) - len(shown)


def image_png(path: Path, max_width: int = MAX_WIDTH) -> tuple[bytes, int, int]:
    """A saved image as PNG bytes no wider than `max_width` (with its size), or UnreadableImage."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            picture = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImage(f"{path.parent.name}/{path.name} could not be read ({type(error).__name__})") from None
    if picture.width > max_width:
        height = max(1, round(picture.height * max_width / picture.width))
        picture = picture.resize((max_width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="png")
    return buffer.getvalue(), picture.width, picture.height
