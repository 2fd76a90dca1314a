"""The counters of a Lightning checkpoint (epoch, iterations, skipped updates, versions) read without torch.

A checkpoint written by `torch.save` is a zip whose `…/data.pkl` holds the dict; its tensors are references to
other entries. Unpickling that one entry with every class outside a small allowlist replaced by an inert
placeholder gives the plain values (numbers, strings, lists) and never runs code from the file or imports torch
(about 3 s of a `genlab report` start on a busy 2-core CPU). Files in torch's older format return None.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

SAFE = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset, ("builtins", "complex"): complex}


class Opaque:
    """Stands in for any object of another class (tensors, torch.Size, optimizers' classes): inert."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:  # what a placeholder function returns
        return Opaque()


class CountersUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return SAFE.get((module, name), Opaque)

    def persistent_load(self, pid: Any) -> Any:  # a tensor's storage, kept in another zip entry
        return None


def checkpoint_values(path: Path) -> dict[str, Any] | None:
    """The checkpoint's dict with inert placeholders for everything but plain values; None for torch's legacy
    (non-zip) format. Raises OSError, zipfile.BadZipFile or pickle.UnpicklingError for a damaged file."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        entry = next((name for name in archive.namelist() if name.endswith("/data.pkl")), None)
        if entry is None:
            raise pickle.UnpicklingError("no data.pkl inside")
        with archive.open(entry) as data:
            loaded = CountersUnpickler(data).load()
    if not isinstance(loaded, dict):
        raise pickle.UnpicklingError("no dict inside")
    return loaded
