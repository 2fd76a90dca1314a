"""Counting the points where the host waits for the device: what a GPU would show, measured on any machine.

Every read of a tensor's value on the host (`.item()`, `bool(t)`, `float(t)`, `if t:`, `int(t)`) dispatches
`aten._local_scalar_dense`; on a GPU each one stops the host until the device has finished everything queued
before it, so the host can no longer run ahead. The same dispatch happens on a CPU, which makes the count a
faithful proxy that tests and `benchmarks/gpu_check.py` can take anywhere. Copies to the host (`tolist()`,
`numpy()`, `cpu()`) wait as well but dispatch nothing on a CPU; they are counted at the Python call.

    with HostSyncCounter() as counter:
        ...
    counter.count, counter.where   # how many, and the innermost genlab/benchmark frames that caused them

`SyncsPerIteration` is the callback form: it counts each training iteration separately (from the batch's start
to its end, the training step and every optimizer step in it), so a test can ask for zero on the iterations that
neither log, checkpoint nor evaluate.
"""

from __future__ import annotations

import traceback
from typing import Any

import lightning as L
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from typing_extensions import Self

from genlab.runtime import HOST_READ_OP

HOST_COPIES = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu}
# frames that only pass through
WRAPPERS = ("genlab/host_syncs.py", "/torch/utils/", "/torch/_dynamo/", "/torch/_compile.py")


class _ScalarReads(TorchDispatchMode):
    def __init__(self, counter: HostSyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is HOST_READ_OP:
            frames = traceback.extract_stack()[:-1]
            if not _optimizer_step_counter(args[0], frames):
                self.counter.record(frames)
        return func(*args, **(kwargs or {}))


class _HostCopies(TorchFunctionMode):
    """`tolist()`, `numpy()`, `cpu()`: on a GPU each copies to the host and waits; on a CPU they dispatch nothing,
    so they are caught here, at the Python call. Counted whatever the tensor's device (a host tensor's `tolist()`
    costs nothing on a GPU either): the count errs on the side of too many."""

    def __init__(self, counter: HostSyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in HOST_COPIES:
            self.counter.record(traceback.extract_stack()[:-1])
        return func(*args, **(kwargs or {}))


class HostSyncCounter:
    """Counts host reads of tensor values inside the block, with the line of code behind each."""

    def __init__(self) -> None:
        self.where: list[str] = []  # one line of code per read
        self._modes = [_ScalarReads(self), _HostCopies(self)]

    @property
    def count(self) -> int:
        return len(self.where)

    def record(self, frames: traceback.StackSummary) -> None:
        self.where.append(_caller(frames))

    def __enter__(self) -> Self:
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


def _optimizer_step_counter(tensor: torch.Tensor, frames: traceback.StackSummary) -> bool:
    """A torch optimizer reading its `step` count, a 0-d host tensor: on a GPU it stays on the host (unless the
    optimizer is fused or capturable), so reading it costs no wait for the device. Left out of the count."""
    asking = [frame for frame in frames if not any(part in frame.filename for part in WRAPPERS)]
    return tensor.dim() == 0 and bool(asking) and "/torch/optim/" in asking[-1].filename


def _caller(frames: traceback.StackSummary) -> str:
    """The innermost frame outside torch and this module: the line that asked for the value."""
    for frame in reversed(frames):
        if "/torch/" not in frame.filename and not frame.filename.endswith("genlab/host_syncs.py"):
            return f"{frame.filename}:{frame.lineno} {frame.line}"
    return "?"


class SyncsPerIteration(L.Callback):
    """Host synchronisations of each training iteration, by iteration (1-based), with where they came from.

    Place it first among the callbacks: it stops counting at the start of `on_train_batch_end`, before other
    callbacks (which may log, checkpoint or evaluate) run.
    """

    def __init__(self) -> None:
        self.where: dict[int, list[str]] = {}  # iteration -> one line of code per read
        self._counter: HostSyncCounter | None = None
        self._iteration = 0

    @property
    def counts(self) -> dict[int, int]:
        """Reads per iteration."""
        return {iteration: len(where) for iteration, where in self.where.items()}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._iteration += 1
        self._counter = HostSyncCounter()
        self._counter.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._counter is None:
            return
        self._counter.__exit__(None, None, None)
        self.where[self._iteration] = self._counter.where
        self._counter = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None
