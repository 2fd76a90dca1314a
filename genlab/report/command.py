"""`genlab report RUN_DIR [RUN_DIR ...] [-o report.html]`: the run report from the command line.

With one run the page goes into the run folder (where RunReport writes it at the end of fit and test), with
several into ./report.html; `-o` chooses. Bad input is one line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genlab import run_layout as layout
from genlab.errors import GenlabError


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog="genlab report", allow_abbrev=False,
        description="Write one self-contained HTML page (images embedded, no server needed) about one or more run"
                    " folders: header, scores with their protocols, curves, sample grids, figures, warnings;"
                    " several runs get a comparison on top.")
    made.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                      help="run folders, lightning_logs/<experiment>/version_N, or a sweep's study folder (its trials)")
    made.add_argument("-o", "--output", type=Path, default=None,
                      help="the HTML file to write (default: RUN_DIR/report.html for one run,"
                           " ./report.html for several)")
    return made


def default_output(runs: list[Path]) -> Path:
    return runs[0] / "report.html" if len(runs) == 1 else Path("report.html")


def sweep_runs(folder: Path) -> list[Path]:
    """The trial runs of a `genlab sweep` study folder (<study>/trial_NNNN/seed<S>/), or [] for any other folder."""
    if not folder.is_dir() or (folder / layout.CONFIG).exists():
        return []
    return sorted(path.parent for path in folder.glob("trial_*/seed*/config.yaml"))


def run(argv: list[str]) -> int:
    """Exit status: 0 written, 2 for a user error (printed in one line)."""
    from genlab.report import write_report

    arguments = parser().parse_args(argv)
    sweeps = {path: sweep_runs(path) for path in arguments.runs}
    runs = [run for path in arguments.runs for run in (sweeps[path] or [path])]
    one_sweep = len(arguments.runs) == 1 and sweeps[arguments.runs[0]]
    output = arguments.output or (arguments.runs[0] / "report.html" if one_sweep else default_output(runs))
    if output.is_dir():
        print(f"genlab: error: -o {output} is a folder: name the HTML file to write, e.g. {output / 'report.html'}",
              file=sys.stderr)
        return 2
    try:
        written = write_report(runs, output)
    except GenlabError as error:
        print(f"genlab: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"genlab: error: cannot write {output} ({error.strerror or error}): choose another -o", file=sys.stderr)
        return 2
    print(f"genlab: report written to {written} ({written.stat().st_size / 1e6:.2f} MB)")
    return 0
