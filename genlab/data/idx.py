"""Reading the idx files of MNIST and Fashion-MNIST (plain or gzipped), with a clear error when one is damaged."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.errors import GenlabError

_UBYTE = 0x08


def read_idx(path: Path) -> Tensor:
    """The uint8 array stored in an idx file (magic 0x0000 08 <ndim>, big-endian sizes, then the bytes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise GenlabError(f"cannot read {path} ({error}): delete it and let genlab download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or raw[3] == 0:
        raise GenlabError(f"{path} is not an idx file of unsigned bytes: replace it with the original file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise GenlabError(f"{path} is truncated inside its header: replace it with the original file")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise GenlabError(
            f"{path} holds {len(raw):,} bytes but its header promises {expected:,}"
            f" ({'truncated' if len(raw) < expected else 'trailing data'}): replace it with the original file"
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy())

