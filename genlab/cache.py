"""genlab's own cache folder (precision timings, decoded image folders): never inside a user's data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$GENLAB_CACHE_DIR, else $XDG_CACHE_HOME/genlab, else ~/.cache/genlab."""
    explicit = os.environ.get("GENLAB_CACHE_DIR")
    return Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "genlab")
