"""`python benchmarks/gpu_check.py --tiny`, the command CI runs for the GPU path, on this CPU: it names the CPU
capability, prints a table row for every default model, finds no host synchronisation in an ordinary iteration and
an identical resume for each, and exits 0. It runs once, in-process (its `main(argv)`), for all the tests here."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys

import pytest
import torch

from tests.helpers import REPO

MODELS = ["toy_quadratic", "gan_mnist", "dcgan_mnist", "vae_mnist", "wgan_gp_mnist"]


def load_gpu_check():
    """benchmarks/gpu_check.py as a module (benchmarks/ is no package; the script puts its folder on sys.path)."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    """(exit status, printed output) of `gpu_check.py --tiny`, with the automatic precision's probe reporting
    every path equally fast (as tests/conftest.py does for every test: fp32, whatever the CPU) and its cache, the
    working directory and the data root all the test's own."""
    folder = tmp_path_factory.mktemp("gpu_check")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("genlab.precision.measure_paths", lambda model, batch_size, bf16: {
            f"{precision} {layout}": 1.0 for precision in ("32-true", "bf16-mixed")
            for layout in ("contiguous", "channels_last")})
        patch.setenv("GENLAB_CACHE_DIR", str(folder / "genlab-cache"))
        for name in ("GENLAB_AUTO_PRECISION", "GENLAB_DATA_DIR"):
            patch.delenv(name, raising=False)
        patch.chdir(folder)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            status = load_gpu_check().main(["--tiny"])
    return status, printed.getvalue()


def table_rows(output: str) -> dict[str, dict[str, str]]:
    """The final table, by model: column name -> cell (columns are separated by two or more spaces)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model ") and "resume" in line)
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_the_tiny_check_names_the_cpu_capability_and_has_a_row_per_model(tiny_run):
    _, output = tiny_run
    assert f"CPU capability {torch.backends.cpu.get_cpu_capability()}" in output
    rows = table_rows(output)
    assert list(rows) == MODELS
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert all(row["device"] == device and re.fullmatch(r"\S+ \(.+\)", row["precision (why)"]) for row in rows.values())


def test_no_model_synchronises_with_the_host_in_an_ordinary_iteration(tiny_run):
    _, output = tiny_run
    assert {model: row["syncs/it"] for model, row in table_rows(output).items()} == dict.fromkeys(MODELS, "0")


def test_every_resume_is_identical_and_the_check_exits_0(tiny_run):
    status, output = tiny_run
    assert {model: row["resume"] for model, row in table_rows(output).items()} == dict.fromkeys(MODELS, "identical")
    assert status == 0, output[-3000:]
