"""Shared fixtures: tiny generated data sets (idx files, PNG folders) and an in-process CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from genlab.errors import GenlabError
from tests.helpers import SHARED_DATASETS, record_refusal, write_cifar, write_tiny_emoji, write_tiny_mnist


@pytest.fixture()
def tiny_data(tmp_path: Path) -> Path:
    """A data root holding tiny MNIST, FashionMNIST, EmojiOne/png/32, cifar-10-batches-py and mine/{cats,dogs}."""
    root = tmp_path / "data"
    write_tiny_mnist(root, "MNIST")
    write_tiny_mnist(root, "FashionMNIST", seed=1)
    write_tiny_emoji(root / "EmojiOne" / "png" / "32")
    write_cifar(root, per_batch=20)
    for index, name in enumerate(("cats", "dogs")):  # a labelled folder of one's own images
        write_tiny_emoji(root / "mine" / name, count=20, seed=index)
    return root


@pytest.fixture()
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Runs `genlab ARGS` in-process with tmp_path as the working directory (so lightning_logs/ lands there)."""
    from genlab.launch import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["genlab"])  # pytest's own arguments are not the CLI's

    def run(*args: str) -> None:
        main(list(args))

    return run


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their data root explicitly; a developer's $GENLAB_DATA_DIR must not leak in."""
    monkeypatch.delenv("GENLAB_DATA_DIR", raising=False)


@pytest.fixture()
def shared_datasets() -> Path:
    if not (SHARED_DATASETS / "MNIST" / "raw").is_dir():
        pytest.skip("the real datasets in ../shared/datasets are not here")
    return SHARED_DATASETS


@pytest.fixture(autouse=True)
def _fp32_unless_a_test_measures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The automatic precision times the model on this machine; tests must not depend on which CPU runs them,
    so its probe reports every path equally fast (fp32, contiguous wins) unless a test (tests/test_precision.py)
    replaces it, and its cache of measurements lives in the test's own folder."""
    monkeypatch.setattr("genlab.precision.measure_paths", lambda model, batch_size, bf16: {
        f"{precision} {layout}": 1.0
        for precision in ("32-true", "bf16-mixed") for layout in ("contiguous", "channels_last")})
    monkeypatch.setenv("GENLAB_CACHE_DIR", str(tmp_path / "genlab-cache"))
    monkeypatch.delenv("GENLAB_AUTO_PRECISION", raising=False)
    monkeypatch.setattr("genlab.precision.busy_load", lambda: None)  # the test machine's load must not decide


@pytest.fixture(autouse=True)
def _refusals_recorded_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """With $GENLAB_REFUSALS set (benchmarks/fault_table.py sets it), every GenlabError a test provokes is written
    there with the test's name: the table of genlab's answers to bad input is the tests' own."""
    if not os.environ.get("GENLAB_REFUSALS"):
        return
    created = GenlabError.__init__

    def recording(self: GenlabError, *args: object) -> None:
        created(self, *args)
        record_refusal(str(self))

    monkeypatch.setattr(GenlabError, "__init__", recording)
