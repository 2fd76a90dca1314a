"""The shared part of genlab's data modules: splits held as tensors, served by `TensorLoader`.

Where the data live: every split on the host's CPU (`split`, read by callbacks, models and `genlab doctor`), and
the training split a second time on the training device, moved there once when the trainer asks for its loader,
so the iterations slice their batches on the device with no host-to-device copy (on a GPU that copy and its
host-side indexing would otherwise bound a small model's speed). Image splits go to the device as bytes
(`ByteImages`, a quarter of the memory, the same floats bit for bit); other samples as they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from torch import Tensor

from genlab.data.loader import Rows, TensorLoader
from genlab.data.pixels import ByteImages, bytes_to_symmetric_range  # noqa: F401 (re-exported for the data sets)
from genlab.errors import GenlabError, first_line

DATA_DIR_ENV = "GENLAB_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The data root: the explicit setting, else $GENLAB_DATA_DIR, else `data/` in the working directory."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data").expanduser()


def download_missing(missing: list[str], download: bool, not_found: Callable[[str], GenlabError],
                     fetch: Callable[[], object]) -> None:
    """A data set's `prepare_data`: nothing when no file is `missing`; else `fetch()` (torchvision's download) when
    `download` allows it, with one line (`not_found(reason)`) when it does not or when the download fails."""
    if not missing:
        return
    if not download:
        raise not_found(f"missing {', '.join(missing)}; download is off")
    try:
        fetch()
    except Exception as error:  # noqa: BLE001 - offline: bare RuntimeError, URLError
        raise not_found(f"download failed: {first_line(error)}") from None


class Split(NamedTuple):
    """One split: samples (N x data_shape, float in [-1, 1] for images) and integer labels (N,)."""

    samples: Tensor
    labels: Tensor


class Splits(NamedTuple):
    train: Split
    val: Split
    test: Split


def split_off(split: Split, held_out: int, seed: int) -> tuple[Split, Split]:
    """A seeded random (kept, held-out) partition of one split."""
    if not 0 <= held_out < len(split.labels):
        raise GenlabError(
            f"val_size {held_out} must be at least 0 and below the {len(split.labels)} training samples:"
            " lower data.val_size"
        )
    order = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(seed))
    kept, held = order[: len(order) - held_out], order[len(order) - held_out :]
    return Split(*(t[kept] for t in split)), Split(*(t[held] for t in split))


class TensorDataModule(L.LightningDataModule):
    """Loads its splits once into tensors (`load_splits`) and batches them by indexing.

    The splits stay on the CPU; the training loader serves a copy of the training split held on the trainer's
    device (`training_device`), made once and kept. Validation, test and predict loaders slice on the CPU (they
    run far less often, and the evaluation callbacks read the same CPU splits).

    Subclasses set `data_shape` (one sample's shape) and `num_classes` (0 for unlabelled data) so models and
    callbacks can check themselves against the data before training starts.

    Args:
        batch_size: training batch size.
        eval_batch_size: batch size of the validation/test loaders (defaults to batch_size).
        drop_last: drop the last incomplete training batch (BatchNorm dislikes a batch of 1).
        seed: seeds the validation split, the training subset and the per-epoch shuffling; a resumed run
            reshuffles identically.
        train_subset: train on this many training images only (None: all), drawn at random with `seed` and
            the same in every run with that seed: the small-data regime DiffAugment (`GAN(augment=…)`) is for.
            Validation and test splits stay whole; scores against the training split use the subset.
    """

    data_shape: tuple[int, ...]
    num_classes: int = 0

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        drop_last: bool = True,
        seed: int = 0,
        train_subset: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise GenlabError(f"data.batch_size must be at least 1, got {batch_size}")
        if train_subset is not None and train_subset < 1:
            raise GenlabError(f"data.train_subset must be at least 1 (or null for every image), got {train_subset}")
        self.batch_size, self.drop_last, self.seed, self.train_subset = batch_size, drop_last, seed, train_subset
        self.eval_batch_size = eval_batch_size or batch_size
        self.splits: Splits | None = None
        self._train_on_device: tuple[torch.device, tuple[Rows, ...]] | None = None

    def load_splits(self) -> Splits:  # pragma: no cover - interface
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = self.load_splits()
            self.splits = Splits(self._subset(splits.train), splits.val, splits.test)

    def _subset(self, train: Split) -> Split:
        """`train_subset` images of the training split, in their original order (a seeded choice)."""
        if self.train_subset is None:
            return train
        if self.train_subset > len(train.labels):
            raise GenlabError(f"data.train_subset is {self.train_subset} but the training split has only"
                              f" {len(train.labels)} images: lower it, or set it to null for all of them")
        chosen = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(self.seed))
        kept = chosen[: self.train_subset].sort().values
        return Split(*(t[kept] for t in train))

    def _loaded(self) -> Splits:
        if self.splits is None:
            self.setup()
        assert self.splits is not None
        return self.splits

    def split(self, name: str) -> Split:
        """The samples and labels of the "train", "val" or "test" split, loaded on first use."""
        return getattr(self._loaded(), name)

    def describe(self) -> dict[str, Any]:
        """What a score's real images rest on, for its record: the data module and its split sizes."""
        splits = self._loaded()
        return {"data_module": type(self).__name__, "train": len(splits.train.labels), "val": len(splits.val.labels),
                "test": len(splits.test.labels), "train_subset": self.train_subset, "seed": self.seed}

    def training_device(self) -> torch.device:
        """The attached trainer's device; the CPU when no trainer is attached (a test or a tool reading the loader)."""
        trainer = self.trainer
        return torch.device("cpu") if trainer is None else trainer.strategy.root_device

    def _train_tensors(self) -> tuple[Rows, ...]:
        """The training split on the training device: the CPU split itself there, else a copy made once."""
        device = self.training_device()
        if device.type == "cpu":
            return tuple(self._loaded().train)
        if self._train_on_device is None or self._train_on_device[0] != device:
            samples, labels = self._loaded().train
            as_bytes = ByteImages.encode(samples)
            rows = (samples if as_bytes is None else as_bytes).to(device)
            self._train_on_device = (device, (rows, labels.to(device)))
        return self._train_on_device[1]

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """A batch of tensors already on `device` (the training loader slices them there) is passed on as it is:
        Lightning's generic walk over the collection would visit every element, every iteration, to move nothing."""
        if isinstance(batch, (tuple, list)) and all(isinstance(t, Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self) -> TensorLoader:
        """Batches sliced on the training device, in the order of (seed, epoch) drawn on the host."""
        return TensorLoader(
            self._train_tensors(), self.batch_size, shuffle=True, drop_last=self.drop_last, seed=self.seed
        )

    def val_dataloader(self) -> TensorLoader:
        return TensorLoader(tuple(self._loaded().val), self.eval_batch_size)

    def test_dataloader(self) -> TensorLoader:
        return TensorLoader(tuple(self._loaded().test), self.eval_batch_size)

    def predict_dataloader(self) -> TensorLoader:
        """What `genlab predict` draws, as (label, item index) rows: one sample per test-split item with its label,
        or the `draw` plan. Each item's sample is seeded by its index, so any number of processes and any batch
        size draw the same sample for it."""
        labels = self._loaded().test.labels if self.labels_to_draw is None else self.labels_to_draw
        return TensorLoader((labels, torch.arange(len(labels))), self.eval_batch_size)

    #: the labels of the samples `genlab predict` draws, set by `draw` (None: one per test-split item)
    labels_to_draw: Tensor | None = None

    def draw(self, count: int, classes: list[int] | None, num_classes: int) -> None:
        """Let `genlab predict` draw `count` samples, their labels cycling through `classes` (default: every one of
        the model's `num_classes`; all 0 for an unconditional model). One line for a plan the model cannot draw."""
        if count < 1:
            raise GenlabError(f"--num_samples must be at least 1, got {count}")
        if classes and not num_classes:
            raise GenlabError("--classes chooses the labels of a conditional model's samples, and this model is"
                              " unconditional: leave --classes out")
        if classes and not all(0 <= label < num_classes for label in classes):
            raise GenlabError(f"--classes {classes} must lie in 0..{num_classes - 1}, the model's classes")
        cycle = torch.tensor(classes or list(range(max(num_classes, 1))), dtype=torch.long)
        self.labels_to_draw = cycle[torch.arange(count) % len(cycle)]


def data_split(datamodule: object, name: str, needed_by: str) -> Split:
    """The "train", "val" or "test" split of a genlab data module: how callbacks and models read real data. One line
    when the data module is not a genlab one (`needed_by` says who asked)."""
    if not isinstance(datamodule, TensorDataModule):
        raise GenlabError(f"{needed_by} reads real images from a genlab data module (e.g. genlab.data.MNISTDataModule),"
                          f" not {type(datamodule).__name__}: configure one under data:")
    return datamodule.split(name)
