"""Pixels as bytes and as floats in [-1, 1]: the conversion, and images held as bytes that index as floats.

`ByteImages` is how an image training split lives on the accelerator: a quarter of float32's memory (MNIST's
55,000 training images: 43 MB instead of 172 MB), with batches gathered from a 256-entry table of the very floats
the split holds on the host, so a model sees the same values bit for bit as from the float split.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 4096  # samples encoded and checked at a time: bounds the host's temporary memory


def bytes_to_symmetric_range(images: Tensor) -> Tensor:
    """uint8 images (N, C, H, W) in [0, 255] → float32 in [-1, 1]."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


class ByteImages:
    """Float32 samples stored as uint8 codes into `table`; indexed like a tensor, on the device of the codes."""

    def __init__(self, codes: Tensor, table: Tensor) -> None:
        self.codes, self.table = codes, table

    @classmethod
    def encode(cls, samples: Tensor) -> ByteImages | None:
        """The samples as bytes, or None when any value is not exactly `bytes_to_symmetric_range` of a byte (e.g.
        toy points, values off the 256-step grid): the check compares bits, so a split that encodes decodes to
        itself."""
        if samples.dtype != torch.float32 or samples.device.type != "cpu":
            return None
        table = bytes_to_symmetric_range(torch.arange(256, dtype=torch.uint8))
        codes = torch.empty(samples.shape, dtype=torch.uint8)
        for part, values in zip(codes.split(CHUNK), samples.split(CHUNK)):
            part.copy_(values.add(1.0).mul_(127.5).round_().clamp_(0, 255))
            if not torch.equal(table[part.long()].view(torch.int32), values.view(torch.int32)):
                return None
        return cls(codes, table)

    def to(self, device: torch.device) -> ByteImages:
        return ByteImages(self.codes.to(device), self.table.to(device))

    @property
    def device(self) -> torch.device:
        return self.codes.device

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.table.nbytes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: Tensor) -> Tensor:
        """A float32 batch: a gather, on the device, from the table (no arithmetic, hence no rounding)."""
        return self.table[self.codes[index].long()]
