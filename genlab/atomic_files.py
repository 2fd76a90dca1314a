"""Files written whole or not at all, and a full disk answered in one line.

Every file genlab writes into a run folder goes through here: the bytes are made in memory first, written
under a temporary name in the same folder and renamed over the real name (a rename within one file system is
atomic), and lines are appended to a log either whole or not at all. When the disk is full the temporary file
is removed and a `GenlabError` names the file, the space it needed and the space left, so a run stops with
one line and every file it wrote before stays intact. (`file_sha256` reads them back: the one hash of a file
records and checks use.)
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

from genlab.errors import GenlabError


def disk_full(path: Path | None, needed: int | None) -> GenlabError:
    """The one-line error for `needed` bytes (None: unknown) that did not fit on the disk holding `path`."""
    try:
        free = f"{shutil.disk_usage(path.parent if path else '.').free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    size = f"{needed / 1e6:.1f} MB needed, " if needed is not None else ""
    return GenlabError(f"no space left on the device for {path or 'a file of the run'} ({size}{free}): free some"
                       " space and resume with --ckpt_path last; the files written before are intact")


def disk_full_cause(error: BaseException) -> OSError | None:
    """The "no space left on device" error behind `error`, if any (libraries wrap and chain them)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def write_bytes(path: Path, data: bytes) -> None:
    """`path` holds `data` afterwards, or (on any error) whatever it held before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise disk_full(path, len(data)) from None
        raise


def save_png(image: Tensor, path: Path) -> None:
    """torchvision's `save_image` (same bytes), written atomically."""
    from torchvision.utils import save_image

    buffer = io.BytesIO()
    save_image(image, buffer, format="png")
    write_bytes(path, buffer.getvalue())


def append_line(path: Path, text: str) -> None:
    """Append one line (`text` without its newline) whole, or leave the file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (text + "\n").encode()
    with open(path, "ab") as file:
        size = file.tell()
        try:
            file.write(data)
            file.flush()
        except OSError as error:
            file.truncate(size)  # no half line
            if error.errno == errno.ENOSPC:
                raise disk_full(path, len(data)) from None
            raise


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One JSON record per line, appended whole."""
    append_line(path, json.dumps(record))


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (weights files reach hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

