"""MNIST and Fashion-MNIST, read once from their idx files into tensors."""

from __future__ import annotations

import os
from pathlib import Path

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
from genlab.data.idx import read_idx
from genlab.errors import GenlabError

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class MNISTDataModule(TensorDataModule):
    """MNIST digits as 1x28x28 images in [-1, 1] with their labels.

    train/val come from the 60,000 training images (`val_size` held out at random, seeded); test is the
    official 10,000. Files are read from `<data_dir>/MNIST/raw/` (torchvision's layout, plain or .gz).

    Args:
        data_dir: data root; defaults to $GENLAB_DATA_DIR, else `data/`.
        val_size: training images held out for validation.
        download: let torchvision download missing files (needs a network).
    """

    folder = "MNIST"
    torchvision_class = torchvision.datasets.MNIST
    data_shape = (1, 28, 28)
    num_classes = 10

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 5000,
        download: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        train_subset: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, drop_last=drop_last, seed=seed,
                         train_subset=train_subset)
        self.data_dir, self.val_size, self.download = resolve_data_dir(data_dir), val_size, download

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / self.folder / "raw"

    def _missing(self) -> list[str]:
        return [name for name in _FILES.values() if self._find(name) is None]

    def _find(self, name: str) -> Path | None:
        for candidate in (self.raw_dir / name, self.raw_dir / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def _not_found(self, reason: str) -> GenlabError:
        return GenlabError(
            f"{self.folder} not found in {self.raw_dir.resolve()} ({reason}): point --data.data_dir or"
            f" $GENLAB_DATA_DIR at a folder holding {self.folder}/raw/"
        )

    def prepare_data(self) -> None:
        def fetch() -> None:
            for train in (True, False):
                self.torchvision_class(os.fspath(self.data_dir), train=train, download=True)

        download_missing(self._missing(), self.download, self._not_found, fetch)

    def load_splits(self) -> Splits:
        if missing := self._missing():
            raise self._not_found(f"missing {', '.join(missing)}")
        arrays = {key: read_idx(self._find(name)) for key, name in _FILES.items()}  # type: ignore[arg-type]
        for part in ("train", "test"):
            images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
            if images.dim() != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
                raise GenlabError(
                    f"{self.raw_dir} holds {part} images of shape {tuple(images.shape)} and {len(labels)} labels;"
                    f" expected N x 28 x 28 images with N labels: replace the files with the originals"
                )
        full = Split(bytes_to_symmetric_range(arrays["train_images"].unsqueeze(1)), arrays["train_labels"].long())
        train, val = split_off(full, self.val_size, self.seed)
        test = Split(bytes_to_symmetric_range(arrays["test_images"].unsqueeze(1)), arrays["test_labels"].long())
        return Splits(train, val, test)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando): ten clothing classes, same format and splits as MNIST."""

    folder = "FashionMNIST"
    torchvision_class = torchvision.datasets.FashionMNIST
