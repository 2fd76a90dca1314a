"""genlab's answer to every bad input and fault the tests provoke, as a Markdown table: the tests are the list.

    python benchmarks/fault_table.py                         # the reliability and data tests, a few minutes
    python benchmarks/fault_table.py tests/test_cli.py       # any test files or pytest selections

It runs the tests with $GENLAB_REFUSALS set, which makes every `GenlabError` they provoke, and every
`genlab: error:` line they read from the CLI, land in a file beside the test's name (tests/conftest.py,
tests/helpers.py `record_refusal`); a test that passes has asserted the line it provoked. Lines from faults tried in
separate `genlab` processes (signals, a full disk) are asserted by their tests but not collected here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = ["tests/test_reliability.py", "tests/test_data.py", "tests/test_data_folder.py", "tests/test_data_cifar.py",
           "tests/test_cli.py", "tests/test_evaluation.py"]


def collect(selection: list[str]) -> tuple[list[dict[str, str]], int]:
    """(the recorded refusals in order, pytest's exit status) of the tests in `selection`."""
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "refusals.jsonl"
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
                              cwd=REPO, env={**os.environ, "GENLAB_REFUSALS": str(table)}, check=False,
                              capture_output=True, text=True)
        print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:], file=sys.stderr)
        rows = [json.loads(line) for line in table.read_text().splitlines()] if table.is_file() else []
    return rows, done.returncode


def markdown(rows: list[dict[str, str]]) -> str:
    """One row per (test, line), each test named once, `|` escaped."""
    lines = ["| test | genlab's answer |", "|---|---|"]
    seen: set[tuple[str, str]] = set()
    for row in rows:
        line = row["line"].removeprefix("genlab: error: ")
        if (row["test"], line) in seen:
            continue
        seen.add((row["test"], line))
        lines.append(f"| {row['test'].split('::')[-1]} | {line.replace('|', '&#124;')} |")
    return "\n".join(lines)


def main() -> None:
    rows, status = collect(sys.argv[1:] or DEFAULT)
    print(markdown(rows))
    if status:
        raise SystemExit(f"fault_table: some tests failed (pytest exit {status}): the table is incomplete")


if __name__ == "__main__":
    main()
