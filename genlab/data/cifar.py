"""CIFAR-10, read once from torchvision's files (`cifar-10-batches-py/`) into tensors.

The files are Python pickles; they are read with an unpickler that only builds the dicts, lists, bytes and NumPy
arrays CIFAR's batches hold, so a replaced file cannot run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from genlab.data.base import (
    Split,
    Splits,
    TensorDataModule,
    bytes_to_symmetric_range,
    download_missing,
    resolve_data_dir,
    split_off,
)
from genlab.errors import GenlabError, first_line

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
FILES = (*TRAIN_BATCHES, "test_batch", "batches.meta")
ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class BatchUnpickler(pickle.Unpickler):
    """Builds only what CIFAR's batch files contain; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict[str, Any]:
    """One batch file as a dict with str keys (the files were written by Python 2: its strings read as latin-1)."""
    try:
        with open(path, "rb") as file:
            batch = BatchUnpickler(file, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise GenlabError(f"{path} is not a CIFAR-10 batch file ({first_line(error)}): replace it with the"
                          " original") from None
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def batch_images(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and int64 labels of one batch file."""
    batch = read_batch(path)
    data, labels = np.asarray(batch.get("data")), batch.get("labels")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels is None \
            or len(labels) != len(data):
        raise GenlabError(f"{path} holds data of shape {data.shape} and {0 if labels is None else len(labels)}"
                          " labels; expected N x 3072 bytes with N labels: replace it with the original")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.tensor(labels, dtype=torch.long)


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10: 3 x 32 x 32 colour images in [-1, 1] of ten classes (airplane … truck).

    train/val come from the 50,000 training images (`val_size` held out at random, seeded); test is the official
    10,000. Files are read from `<data_dir>/cifar-10-batches-py/` (torchvision's layout; the python version of
    the archive, unpacked).

    Args:
        data_dir: data root; defaults to $GENLAB_DATA_DIR, else `data/`.
        val_size: training images held out for validation (0: the training images serve as validation too).
        download: let torchvision download and unpack the archive when files are missing (needs a network).
    """

    data_shape = (3, 32, 32)
    num_classes = 10

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 0,
        download: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        train_subset: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, drop_last=drop_last, seed=seed,
                         train_subset=train_subset)
        self.data_dir, self.val_size, self.download = resolve_data_dir(data_dir), val_size, download
        self.class_names: list[str] = []

    @property
    def folder(self) -> Path:
        return self.data_dir / FOLDER

    def _missing(self) -> list[str]:
        return [name for name in FILES if not (self.folder / name).is_file()]

    def _not_found(self, reason: str) -> GenlabError:
        return GenlabError(f"CIFAR-10 not found in {self.folder.resolve()} ({reason}): point --data.data_dir or"
                           f" $GENLAB_DATA_DIR at a folder holding {FOLDER}/ (torchvision's layout)")

    def prepare_data(self) -> None:
        download_missing(self._missing(), self.download, self._not_found,
                         lambda: torchvision.datasets.CIFAR10(os.fspath(self.data_dir), train=True, download=True))

    def load_splits(self) -> Splits:
        if missing := self._missing():
            raise self._not_found(f"missing {', '.join(missing)}")
        names = read_batch(self.folder / "batches.meta").get("label_names", [])
        self.class_names = [name.decode() if isinstance(name, bytes) else str(name) for name in names]
        parts = [batch_images(self.folder / name) for name in TRAIN_BATCHES]
        images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        full = Split(bytes_to_symmetric_range(images), labels)
        train, val = split_off(full, self.val_size, self.seed) if self.val_size else (full, full)
        test_images, test_labels = batch_images(self.folder / "test_batch")
        return Splits(train, val, Split(bytes_to_symmetric_range(test_images), test_labels))
