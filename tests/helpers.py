"""The one home of the tests' shared helpers: tiny data written in each data set's own format, the command lines
of tiny runs, and small stand-ins. (Fixtures live in conftest.py; no test module imports another.)"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from genlab.metrics import ClassifierMetrics
from genlab.metrics.suite import EvaluationPlan
from genlab.models import GAN
from genlab.nets import MLPDiscriminator, MLPGenerator

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


# --- tiny runs through the CLI ---------------------------------------------------------------------------

TINY_GAN = [
    "--config", str(EXPERIMENTS / "gan_mnist.yaml"),
    "--model.init_args.generator.init_args.hidden=[32, 32]",
    "--model.init_args.discriminator.init_args.hidden=[16]",
    "--data.init_args.batch_size=16",
    "--data.init_args.val_size=16",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--evaluate=false",  # the YAML's classifier metrics need a trained classifier (SCORED_TINY_GAN turns them on)
]


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


TINY_CLASSIFIER = [
    "--config", str(EXPERIMENTS / "classifier_mnist.yaml"),
    "--model.init_args.network.init_args.channels=[4, 8]",
    "--model.init_args.network.init_args.hidden=16",
    "--data.init_args.batch_size=32", "--data.init_args.val_size=100",
    "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]

SCORED_TINY_GAN = [*TINY_GAN, "--data.init_args.batch_size=32", "--data.init_args.val_size=100",
                   "--evaluate=true"]  # TINY_GAN with its YAML's scores (needs a trained TINY_CLASSIFIER)

METRICS_YAML = """
trainer:
  callbacks:
    - class_path: genlab.callbacks.GenerativeMetrics
      init_args:
        num_samples: 100
        batch_size: 40
        every_n_epochs: 1
        suites:
          - class_path: genlab.metrics.ClassifierMetrics
            init_args: {checkpoint: lightning_logs/classifier_mnist, splits: 10}
"""


def vae_args(tiny_data: Path) -> list[str]:
    return ["--config", str(EXPERIMENTS / "vae_mnist.yaml"), f"--data.data_dir={tiny_data}",
            "--data.batch_size=16", "--data.val_size=16", "--trainer.enable_progress_bar=false", "--evaluate=false",
            "--model.init_args.mixture_components=3", "--trainer.callbacks=[]"]


def error_line(capsys: pytest.CaptureFixture) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("genlab: error: ")
    record_refusal(lines[0])
    return lines[0]


def record_refusal(line: str) -> None:
    """Append genlab's answer to bad input, with the test that provoked it, to $GENLAB_REFUSALS (when set)."""
    if path := os.environ.get("GENLAB_REFUSALS"):
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(path, "a", encoding="utf-8") as table:
            table.write(json.dumps({"test": test, "line": line}) + "\n")


# --- the divergence guard's tiny GAN -------------------------------------------------------------------------

SHAPE = [1, 4, 4]
GUARD_BATCH = 8


def guard_batches(iterations: int, nan_at: tuple[int, ...] = ()) -> TensorDataset:
    """`iterations` batches of images in [-1, 1]; the batches of the 1-based iterations in `nan_at` hold one NaN."""
    generator = torch.Generator().manual_seed(0)
    samples = torch.rand(iterations * GUARD_BATCH, *SHAPE, generator=generator) * 2 - 1
    for iteration in nan_at:
        samples[(iteration - 1) * GUARD_BATCH, 0, 0, 0] = float("nan")
    return TensorDataset(samples, torch.zeros(len(samples), dtype=torch.long))


def guarded_tiny_gan(on_divergence: str = "stop") -> GAN:
    torch.manual_seed(0)
    return GAN(  # BatchNorm in the generator: its running statistics must be put back too
        MLPGenerator(latent_dim=4, hidden=[8, 8], out_shape=SHAPE, batch_norm=True),
        MLPDiscriminator(in_shape=SHAPE, hidden=[8]),
        on_divergence=on_divergence,  # type: ignore[arg-type]
    )


# --- a stand-in classifier that reads its prediction from a pixel -------------------------------------------

CLASSES = 4


class LabelReadingNet(nn.Module):
    """A stand-in classifier on 1x4x4 images: the first pixel encodes the predicted class (0, 0.25, 0.5,
    0.75), the logits are 4 x one-hot of it (p(y|x) is not one-hot, its argmax is), features: two pixels."""

    in_shape, num_classes, feature_dim = (1, 4, 4), CLASSES, 2

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        predicted = images[:, 0, 0, 0].mul(4).round().long()
        return 4.0 * nn.functional.one_hot(predicted, CLASSES).float(), images.flatten(1)[:, 5:7]


def images_predicted_as(labels: list[int], seed: int) -> torch.Tensor:
    images = torch.rand(len(labels), 1, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    images[:, 0, 0, 0] = torch.tensor(labels, dtype=torch.float32) / 4
    return images


def classifier_suite(monkeypatch: pytest.MonkeyPatch, model_classes: int, num_fake: int,
                     num_real: int, manifold_k: int | None = None) -> ClassifierMetrics:
    """ClassifierMetrics with its checkpoint loading replaced by the stand-in; the rest of prepare() runs."""
    from genlab.metrics.classifier_checkpoint import LoadedClassifier

    loaded = LoadedClassifier(LabelReadingNet(), Path("stand-in.ckpt"), "0" * 12, None, None)
    monkeypatch.setattr("genlab.metrics.classifier.load_classifier", lambda checkpoint: loaded)
    suite = ClassifierMetrics(checkpoint="unused", splits=1, manifold_k=manifold_k)
    suite.prepare(EvaluationPlan((1, 4, 4), "MNISTDataModule", CLASSES, model_classes, num_fake, num_real,
                                 "val"))
    return suite
