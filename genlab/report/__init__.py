"""`genlab report`: one self-contained HTML page about one run or several (see `write_report`)."""

from __future__ import annotations

from pathlib import Path

from genlab.atomic_files import write_bytes
from genlab.report.compare import compare
from genlab.report.html import page
from genlab.report.reading import Run, read_run


def generator_versions() -> str:
    """genlab, torch and lightning versions of this process: who made the page."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("genlab", "torch", "lightning"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def render(runs: list[Run]) -> str:
    """The page for already-read runs (a comparison on top when there are several)."""
    return page(runs, compare(runs) if len(runs) > 1 else None, generator_versions())


def write_report(folders: list[Path | str], output: Path | str) -> Path:
    """Read the run folders, write the page to `output` whole (temporary name, then rename); returns its path.

    Raises GenlabError, in one line, for a folder that is not a run; everything else damaged in a run is said on
    the page.
    """
    runs = [read_run(folder) for folder in folders]
    output = Path(output)
    write_bytes(output, render(runs).encode("utf-8"))
    return output


__all__ = ["render", "write_report"]
