"""The report as one self-contained HTML page: inline CSS, images as data URIs, no script, no network.

Every text from a run (config values, tags, file names) is escaped. Score cells carry `data-score` and
`data-iteration`, so a test (or a person with the developer tools) can match the page with `metrics.jsonl`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import re
from html import escape
from pathlib import Path
from typing import Any

from genlab import run_layout as layout
from genlab.report.compare import Comparison
from genlab.report.events import Series
from genlab.report.figures import (
    FILMSTRIP_FRAMES,
    THUMBNAIL_WIDTH,
    UnreadableImage,
    curves_png,
    evenly_spaced,
    image_png,
)
from genlab.report.reading import Run, figure_files
from genlab.report.summary import header, last_record, protocol, warnings

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1280px;padding:0 16px 48px;color:#1b1b1b}
h1{margin:16px 0 4px}h2{border-bottom:2px solid #ccc;padding-top:12px}h3{margin:20px 0 6px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}.warn{background:#fff4e0;border-left:5px solid #e08a00;padding:6px 12px;margin:8px 0}
.missing{background:#f4f4f4;border-left:5px solid #888;padding:6px 12px;margin:8px 0}
.refuse{background:#fde8e8;border-left:5px solid #c62828;padding:6px 12px;margin:8px 0}
.strip{display:flex;flex-wrap:wrap;gap:8px}.strip figure{margin:0}figcaption{font-size:12px;color:#555}
.pair{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}
img{max-width:100%;height:auto}.muted{color:#666}code{font-size:13px}
"""


def number(value: Any) -> str:
    """How every score is printed: 5 significant digits, integers whole, missing as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.5g}" if math.isfinite(value) else str(value)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_tag(png: bytes, width: int, height: int, alt: str) -> str:
    return f'<img src="{data_uri(png)}" width="{width}" height="{height}" alt="{escape(alt)}">'


def table(headings: list[str], rows: list[list[str]], css: str = "") -> str:
    """Cells are HTML already (escape before); a cell starting with '<td' is taken whole."""
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headings) + "</tr>" if headings else ""
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<div class="scroll"><table class="{css}">{head}{body}</table></div>'


def notes(items: list[str], css: str, title: str) -> str:
    if not items:
        return ""
    return f'<div class="{css}"><strong>{escape(title)}</strong><ul>' + "".join(
        f"<li>{escape(item)}</li>" for item in items) + "</ul></div>"


def score_cell(value: Any, name: str, record: dict[str, Any]) -> str:
    return (f'<td class="num" data-score="{escape(name)}" data-iteration="{escape(str(record.get("iteration")))}"'
            f' data-stage="{escape(str(record.get("stage")))}">{number(value)}</td>')


def by_sampler(scores: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """{"classifier/fd": {"configured": …, "ema": …}} from names like `classifier/fd@ema`, and the samplers found
    (the configured one first): one row per score, one column per sampler."""
    table_: dict[str, dict[str, Any]] = {}
    for name, value in scores.items():
        score, _, sampler = name.partition("@")
        table_.setdefault(score, {})[sampler or "configured"] = value
    samplers = list(dict.fromkeys(["configured", *(s for row in table_.values() for s in row if s != "configured")]))
    return table_, samplers


def last_scores(record: dict[str, Any], source: str = layout.SCORE_RECORDS) -> str:
    """The newest record's scores, one row per score with a column per sampler (configured, running statistics,
    EMA, mixture) and the real-data value, then the record's whole protocol."""
    real = record.get("real_values") or {}
    real_scores = real.get("scores") or {}
    real_label = f"real data ({real.get('split')} split, {number(real.get('count'))} images)" if real_scores else \
        "real data"
    rows_by_score, samplers = by_sampler(record.get("scores", {}))
    rows = [[escape(name), *(score_cell(values.get(sampler), name + ("" if sampler == "configured" else f"@{sampler}"),
                                        record) for sampler in samplers), number(real_scores.get(name))]
            for name, values in rows_by_score.items()]
    if real and not real_scores:
        rows.append(["", *([""] * len(samplers)), escape(str(real.get("note", "no real-data values")))])
    caption = (f"<h3>Scores: {escape(str(record.get('stage')))} evaluation at iteration"
               f" {number(record.get('iteration'))} ({source})</h3>")
    protocol_rows = [[f"<code>{escape(key)}</code>", escape(", ".join(map(str, value)) if isinstance(value, list)
                                                        else str(value))] for key, value in protocol(record).items()]
    headings = ["score", *(("value" if len(samplers) == 1 else "configured sampler") if sampler == "configured"
                           else f"@{sampler}" for sampler in samplers), real_label]
    return (f'{caption}<div class="pair"><div>{table(headings, rows)}</div>'
            f'<div><strong>Protocol of these scores</strong>{table(["setting", "value"], protocol_rows, "protocol")}'
            "</div></div>")


def all_scores(records: list[dict[str, Any]]) -> str:
    """Every evaluation of the run, one row each."""
    names = list(dict.fromkeys(name for record in records for name in record.get("scores", {})))
    rows = [[escape(str(record.get("stage"))), number(record.get("iteration")),
             *(score_cell(record.get("scores", {}).get(name), name, record) for name in names)] for record in records]
    return "<h3>Every evaluation</h3>" + table(["stage", "iteration", *names], rows)


def toy_scores(records: list[dict[str, Any]]) -> str:
    """The toy GAN's newest measures (toy/metrics.jsonl), the sliced Wasserstein floor of real vs real beside."""
    last = records[-1]
    floor = last.get("sliced_wasserstein_real_vs_real")
    rows = [[escape(name), score_cell(last.get(name), f"toy/{name}", {"iteration": last.get("iteration"),
                                                                        "stage": "fit"}),
             number(floor) if name == "sliced_wasserstein" else "—"]
            for name in ("curve_distance", "sliced_wasserstein", "loss_d", "loss_g") if name in last]
    setting = f"{number(last.get('num_points'))} points, {number(last.get('num_directions'))} directions"
    return (f"<h3>Toy measures at iteration {number(last.get('iteration'))} (toy/metrics.jsonl; {setting})</h3>"
            + table(["measure", "value", "real vs real"], rows))


def scores_section(run: Run) -> str:
    if not run.records and run.toy_records:
        return toy_scores(run.toy_records)
    if not run.records and run.memorisation_records:
        return last_scores(run.memorisation_records[-1], layout.MEMORISATION_RECORDS)
    if not run.records:
        return '<p class="muted">No scores: this run has no metrics.jsonl (no GenerativeMetrics callback, or it' \
               " stopped before the first evaluation).</p>"
    stages = list(dict.fromkeys(str(record.get("stage")) for record in run.records))
    parts = [last_scores(last_record(run, stage)) for stage in stages]  # type: ignore[arg-type]
    if run.memorisation_records:
        parts.append(last_scores(run.memorisation_records[-1], layout.MEMORISATION_RECORDS))
    return "".join(parts) + (all_scores(run.records) if len(run.records) > 1 else "")


def score_series(records: list[dict[str, Any]]) -> dict[str, Series]:
    """Each score of the configured sampler over the iterations of the fit's evaluations (metrics.jsonl)."""
    series: dict[str, Series] = {}
    for record in records:
        if record.get("stage") != "fit" or not isinstance(record.get("iteration"), int):
            continue
        for name, value in (record.get("scores") or {}).items():
            if "@" not in name and isinstance(value, (int, float)) and not name.endswith("_std"):
                curve = series.setdefault(name, Series())
                curve.steps.append(record["iteration"])
                curve.values.append(float(value))
    return series


def curves_section(run: Run) -> str:
    """The losses and signals of the event files, and the scores of every evaluation, over iterations."""
    scores = score_series(run.records)
    scalars = {**{tag: series for tag, series in run.events.scalars.items() if tag not in scores}, **scores}
    lines = layout.equilibrium_lines(run.config)
    drawn = curves_png(scalars, lines, first=[tag for tag in scalars if tag.startswith("loss/")])
    if drawn is None:
        return '<p class="muted">No curves: the event files hold no scalars.</p>'
    png, width, height, left_out = drawn
    extra = f'<p class="muted">{left_out} more curves are in TensorBoard.</p>' if left_out else ""
    note = (f'<p class="muted">Dashed: the value when the discriminator cannot tell real from generated'
            f' ({", ".join(sorted(lines))}).</p>' if lines else "")
    return "<h3>Curves over iterations</h3>" + image_tag(png, width, height, "training curves") + note + extra


def _figure(path, problems: list[str], max_width: int | None = None, caption: str = "") -> str:
    try:
        png, width, height = image_png(path, max_width) if max_width else image_png(path)
    except UnreadableImage as error:
        problems.append(str(error))
        return f'<figure><p class="missing">{escape(str(error))}</p></figure>'
    return f"<figure>{image_tag(png, width, height, caption or path.name)}<figcaption>{escape(caption or path.name)}" \
           "</figcaption></figure>"


def iteration_of(path: Path) -> str:
    found = re.search(r"iteration_(\d+)", path.stem)
    return f"iteration {int(found[1]):,}" if found else path.stem


def filmstrip(paths: list[Path], problems: list[str]) -> str:
    """At most FILMSTRIP_FRAMES evenly spaced frames of a series, downscaled, the first and the newest among them."""
    frames = evenly_spaced(paths, FILMSTRIP_FRAMES)
    strip = "".join(_figure(path, problems, THUMBNAIL_WIDTH, iteration_of(path)) for path in frames)
    return f'<div class="strip">{strip}</div>'


def grids_section(run: Run, problems: list[str]) -> str:
    if not run.grids:
        return ""
    last = run.grids[-1]
    return (f"<h3>Fixed-noise samples ({min(len(run.grids), FILMSTRIP_FRAMES)} of {len(run.grids)} grids)</h3>"
            f"{filmstrip(run.grids, problems)}<h3>Last grid</h3>"
            f"{_figure(last, problems, caption=f'samples/{last.name}')}")


def figures_section(run: Run, problems: list[str]) -> str:
    """Each kind's figures: the newest of each series at full size, after a filmstrip when it has several."""
    parts = []
    for kind, series in figure_files(run.folder).items():
        parts.append(f"<h3>{escape(kind)}</h3>")
        parts += [filmstrip(paths, problems) for paths in series if len(paths) > 1]
        newest = "".join(_figure(paths[-1], problems, caption=f"{kind}/{paths[-1].name}") for paths in series)
        parts.append(f'<div class="strip">{newest}</div>')
    return "".join(parts)


def run_section(run: Run, index: int) -> str:
    """One run's section: header, warnings, scores, curves, grids, figures, and what is missing."""
    problems = list(run.problems)
    body = scores_section(run) + curves_section(run) + grids_section(run, problems) + figures_section(run, problems)
    facts = table([], [[escape(label), escape(text)] for label, text in header(run)], "facts")
    return (f'<section id="run-{index}"><h2>{escape(run.name)}</h2>'
            + notes(warnings(run), "warn", "Warnings")
            + notes(problems, "missing", "Missing or unreadable (the page shows the rest)")
            + facts + body + "</section>")


def comparison_section(runs: list[Run], comparison: Comparison) -> str:
    names = [f'<a href="#run-{i}">{escape(run.name)}</a>' for i, run in enumerate(runs)]
    parts = ["<section id=\"comparison\"><h2>Comparison</h2>"]
    if comparison.config_differences:
        rows = [[f"<code>{escape(key)}</code>", *(escape(v) for v in values)]
                for key, values in comparison.config_differences.items()]
        parts.append("<h3>Config differences</h3>" + table(["key", *(r.name for r in runs)], rows))
    else:
        parts.append("<p>The configs are the same.</p>")
    if comparison.protocol_differences:
        parts.append(f'<p class="refuse">Not ranked: these scores were measured under different protocols'
                     f" ({escape(', '.join(comparison.protocol_differences))} differ), so they do not compare.</p>")
    if comparison.only_seed_differs:
        parts.append(f"<p>The runs differ only by seed ({len(runs)} seeds): mean ± standard deviation over them.</p>")
    if comparison.scores:
        parts.append("<h3>Last scores</h3>" + _scores_table(runs, comparison))
    if comparison.unscored:
        parts.append(f'<p class="muted">No scores in: {escape(", ".join(comparison.unscored))}.</p>')
    parts.append("<p>Runs: " + ", ".join(names) + "</p></section>")
    return "".join(parts)


def _scores_table(runs: list[Run], comparison: Comparison) -> str:
    spread = ["mean ± std"] if comparison.spread else []
    rows = []
    for name, values in comparison.scores.items():
        cells = [f'<td class="num" data-compare="{escape(name)}">{number(v)}</td>' for v in values]
        if spread:
            mean, std = comparison.spread.get(name, (None, None))
            cells.append(f'<td class="num">{number(mean)} ± {number(std)}</td>' if mean is not None else "—")
        rows.append([escape(name), *cells])
    return table(["score", *(run.name for run in runs), *spread], rows)


def page(runs: list[Run], comparison: Comparison | None, generator: str) -> str:
    """The whole HTML document."""
    title = "genlab report: " + ", ".join(run.name for run in runs)
    made = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = (comparison_section(runs, comparison) if comparison else "") + "".join(
        run_section(run, index) for index, run in enumerate(runs))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f'<p class="muted">Made {made} by {escape(generator)}. Regenerate with <code>genlab report'
            f" RUN_DIR</code>.</p>{sections}</body></html>\n")
