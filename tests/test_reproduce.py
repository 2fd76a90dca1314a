"""`benchmarks/reproduce.py` end to end on its smallest row (the toy GAN, shortened): train, test, table, and a
second call that finds everything done."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _reproduce(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "reproduce.py"), "--experiments", "toy_quadratic",
         "--runs", str(tmp_path / "runs"), "--output", str(tmp_path / "RESULTS.md"), "--docs", str(tmp_path / "docs"),
         "--set=--trainer.max_steps=300", "--set=--trainer.enable_model_summary=false", *extra],
        capture_output=True, text=True, timeout=600,
    )


def test_the_smallest_row_trains_tests_and_lands_in_the_table_and_a_rerun_skips_it(tmp_path):
    done = _reproduce(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "runs" / "results" / "toy_quadratic-seed0.json").read_text())
    assert result["iterations"] == 150 and result["fit_seconds"] > 0  # 300 optimizer steps = 150 iterations
    toy = (tmp_path / "runs" / "lightning_logs" / "toy_quadratic" / "version_0" / "toy" / "metrics.jsonl")
    last = json.loads(toy.read_text().splitlines()[-1])
    assert result["scores"]["curve_distance"] == last["curve_distance"]
    table = (tmp_path / "RESULTS.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| toy_quadratic |"))
    assert f"curve_distance {last['curve_distance']:.4g}" in row and "| 150 | 32-true |" in row
    assert "| dcgan_mnist |" in table and "not run yet" in table  # every row is listed
    assert (tmp_path / "docs" / "toy_quadratic-seed0.json").is_file()

    again = _reproduce(tmp_path)  # finished runs are neither trained nor tested again
    assert again.returncode == 0 and "+ fit" not in again.stdout and "+ test" not in again.stdout
