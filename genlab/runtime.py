"""The one place genlab reaches into Lightning's private state; each use is pinned by tests/test_runtime.py, so a
Lightning release that moves it fails there, by name, instead of silently changing a schedule or a resume."""

from __future__ import annotations

import lightning as L


def request_stop_after_iteration(trainer: L.Trainer) -> None:
    """Make the fit end after the current iteration, as on SIGTERM: Lightning's loops then raise
    `SIGTERMException` at the iteration's end (under DDP, once rank 0 has it, every rank at the same batch)."""
    trainer._signal_connector.received_sigterm = True
