"""Decoded image folders kept in genlab's cache, so a folder is decoded and resized once, not at every start.

The key is a SHA-256 over the conversion settings and, for every image file, its path inside the folder, size and
modification time: adding, removing, replacing or touching a file, or changing `image_size`, `channels`,
`background` or `on_bad_file`, makes a new entry (the old one is left; delete the folder to reclaim it). The
entry lives in `<genlab cache>/image_folders/<key>.npz` (`genlab.cache.cache_root`), never in the user's folder.
The folder's location is left out of the key on purpose: a moved folder, or a copy that keeps the files' times,
finds its entry (a file whose bytes change keeps neither its size and nanosecond time in practice).
A cache that cannot be read or written is skipped with a warning: it only ever saves time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from genlab.atomic_files import write_bytes
from genlab.cache import cache_root

FORMAT = 1  # bump when the decoding rules change: old entries then no longer match


class DecodedFolder(NamedTuple):
    """A folder's images as uint8 N x H x W x C, their labels, and the files left out as unreadable."""

    pixels: np.ndarray
    labels: np.ndarray
    skipped: list[str]


def folder_key(folder: Path, files: list[Path], settings: dict[str, Any]) -> str:
    """The cache key of `files` (inside `folder`) decoded with `settings`."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, **settings}, sort_keys=True).encode())
    for path in files:
        status = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def entry(key: str) -> Path:
    return cache_root() / "image_folders" / f"{key}.npz"


def load(key: str) -> DecodedFolder | None:
    """The cached decoding, or None (absent, or unreadable: then it is decoded again)."""
    path = entry(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return DecodedFolder(stored["pixels"], stored["labels"], [str(name) for name in stored["skipped"]])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        warnings.warn(f"ignoring the unreadable image cache {path} ({error}); decoding the folder again",
                      stacklevel=2)
        return None


def store(key: str, decoded: DecodedFolder) -> None:
    """Keep `decoded` under `key`, written whole or not at all; a failure (read-only or full disk) only warns."""
    buffer = io.BytesIO()
    np.savez(buffer, pixels=decoded.pixels, labels=decoded.labels, skipped=np.array(decoded.skipped, dtype=str))
    try:
        write_bytes(entry(key), buffer.getvalue())
    except Exception as error:  # noqa: BLE001 - the cache is an optimisation; the run goes on without it
        warnings.warn(f"could not keep the decoded images in {entry(key)} ({error}); the next start decodes"
                      " them again", stacklevel=2)


def physical_memory() -> int | None:
    """This machine's RAM in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
