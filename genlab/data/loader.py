"""Batches of in-memory tensors by indexing: no per-sample Python, no collate, no worker processes.

The order of an epoch depends only on (seed, epoch), like `DistributedSampler`, and the loader remembers how
many batches of the current epoch it has served (`state_dict`). Lightning saves that state in every
checkpoint, so a run resumed mid-epoch continues with exactly the batches it would have seen.

Batches are sliced where the tensors live. The order is always drawn on the host's CPU generator (the same
order, and the same resume, on every device) and moved to the tensors' device once per epoch; each batch is then
`tensor[index]` on that device: no host-to-device copy per iteration, nothing that makes the host wait. The
training split of a genlab data module lives on the training device (`TensorDataModule.train_dataloader`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import Tensor


def _rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochOrder:
    """The index order of one epoch; Lightning calls `set_epoch` on it (as on a `DistributedSampler`)."""

    def __init__(self, size: int, shuffle: bool, seed: int) -> None:
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, rank: int, world_size: int) -> Tensor:
        """This rank's share; with several ranks the order is padded by wrapping so every rank has as many."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        if world_size > 1:
            per_rank = math.ceil(self.size / world_size)
            order = order.repeat(math.ceil(per_rank * world_size / max(self.size, 1)))[: per_rank * world_size]
            order = order[rank::world_size]
        return order


class Rows(Protocol):
    """What a `TensorLoader` slices: a tensor, or anything indexed like one (`genlab.data.pixels.ByteImages`)."""

    @property
    def device(self) -> torch.device: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: Tensor) -> Tensor: ...


class TensorLoader:
    """Yields tuples of batches sliced from `tensors` (all of the same length and device), e.g. (images, labels),
    on the tensors' device."""

    #: Lightning reads `batch_sampler` (then `sampler`) of validation/test loaders to warn about shuffling.
    batch_sampler = None

    def __init__(
        self,
        tensors: tuple[Rows, ...],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if len({len(t) for t in tensors}) != 1:
            raise ValueError("all tensors of a TensorLoader need the same length")
        if len({t.device for t in tensors}) != 1:
            raise ValueError("all tensors of a TensorLoader need the same device")
        self.tensors, self.batch_size, self.drop_last = tensors, batch_size, drop_last
        self.sampler = EpochOrder(len(tensors[0]), shuffle, seed)
        self._served = 0  # batches of `self._served_epoch` already yielded
        self._served_epoch = 0
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches) from a checkpoint

    @property
    def device(self) -> torch.device:
        """Where the batches are sliced and served."""
        return self.tensors[0].device

    @property
    def dataset_size(self) -> int:
        return len(self.tensors[0])

    def __len__(self) -> int:
        _, world_size = _rank_and_world_size()
        per_rank = math.ceil(self.dataset_size / world_size) if world_size > 1 else self.dataset_size
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        epoch = self.sampler.epoch
        # drawn on the host as always, then one copy per epoch (asynchronous: the host does not wait for it)
        order = self.sampler.indices(*_rank_and_world_size()).to(self.device, non_blocking=True)
        start = 0
        if self._resume_at is not None and self._resume_at[0] == epoch:
            start = self._resume_at[1]
        self._resume_at = None
        self._served_epoch, self._served = epoch, start
        for batch in range(start, len(self)):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            self._served = batch + 1
            yield tuple(t[index] for t in self.tensors)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._served_epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_at = (int(state["epoch"]), int(state["batches"]))
