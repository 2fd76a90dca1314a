"""Shared fixtures: tiny generated data sets (idx files, PNG folders) and an in-process CLI runner."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


def write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 array as an idx file, written by hand from the format (magic 0 0 0x08 ndim, big-endian sizes)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.write_bytes(bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes())


def write_tiny_mnist(root: Path, folder: str = "MNIST", train: int = 96, test: int = 32, seed: int = 0) -> Path:
    """Random 28x28 digits with labels 0..9 in torchvision's raw layout; returns the data root."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(count) % 10).astype(np.uint8))
    return root


def write_cifar(root: Path, per_batch: int = 6, test: int = 4) -> dict[str, np.ndarray]:
    """A tiny cifar-10-batches-py/ as the original archive lays it out: dicts of N x 3072 rows (R, G, B planes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name, count in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, count).tolist()
        with open(folder / name, "wb") as file:
            pickle.dump({"batch_label": name, "labels": labels, "data": data,
                         "filenames": [f"{name}_{i}.png" for i in range(count)]}, file, protocol=2)
        written[name] = data
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, file, protocol=2)
    return written


def write_tiny_emoji(folder: Path, count: int = 40, size: int = 32, seed: int = 0) -> Path:
    """Random RGBA PNGs; returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
        Image.fromarray(pixels, "RGBA").save(folder / f"emoji_{index:03d}.png")
    return folder


def tiny_data_arguments(config: Path, data_root: Path, val_size: int = 16) -> list[str]:
    """The command-line settings that point an experiment YAML at the `tiny_data` root."""
    if config.stem == "toy_quadratic":  # synthetic: no data folder, no validation split to shrink
        return []
    text = config.read_text()
    arguments = [f"--data.data_dir={data_root}", f"--data.val_size={val_size}"]
    if "train_subset" in text:  # a small-data experiment: a subset the tiny data set can hold
        arguments.append("--data.train_subset=40")
    if "ImageFolderDataModule" in text:  # your own images: the folder is given on the command line
        arguments = [f"--data.data_dir={data_root}", "--data.folder=mine", "--data.val_size=4", "--data.test_size=4"]
    return arguments


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
    from genlab.cli import main

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
        f"{precision} {layout}": 1.0 for precision in ("32-true", "bf16-mixed") for layout in ("contiguous", "channels_last")})
    monkeypatch.setenv("GENLAB_CACHE_DIR", str(tmp_path / "genlab-cache"))
    monkeypatch.delenv("GENLAB_AUTO_PRECISION", raising=False)
    monkeypatch.setattr("genlab.precision.busy_load", lambda: None)  # the test machine's load must not decide
