"""The divergence guard: what a non-finite loss, gradient or weight does to a run, decided without a host sync.

Every genlab model holds one (`self.divergence = DivergenceGuard(on_divergence)`, a line in its constructor).
Under automatic optimization `TrainingModule`'s hooks drive it; a manual-optimization model calls
`remember_buffers` before each update's forward pass and `step` in place of `optimizer.step()`.

How it stays off the host. Each update's checks (loss, gradient norm, weight norm finite) are computed on the
device and turned into a device flag `go`; the optimizer step is made a no-op where `go` is false - by the
`found_inf` flag torch's fused optimizers take (as GradScaler uses it; genlab builds Adam, AdamW, SGD and
Adagrad fused, `genlab.training.fused`), otherwise by putting weights and optimizer state back with
`torch.where` - and the BatchNorm statistics the forward pass changed are put back the same way. The checks are
kept, unread, until a boundary: a step that logs, any checkpoint, an evaluation, the end of an epoch or of the
fit. There `settle` reads them all at once (one sync) and acts: "stop" saves the state and ends the run naming the
first bad iteration; "skip" counts and warns. Under "stop" every update after the first bad one is a no-op too,
so the weights saved at the boundary are those from before that iteration. Under DDP the flags are combined with
one all-reduce on the device per update (no host wait), so every process decides alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from genlab.errors import GenlabError
from genlab.runtime import batch_under_way, copy_all, foreach_norm
from genlab.training.fused import steps_on_device_flag


class GuardedModule(Protocol):
    """What the guard needs of the LightningModule it guards (`genlab.training.module.GuardedModule` is one)."""

    trainer: Any

    @property
    def iteration(self) -> int: ...

    def buffers(self) -> Iterator[Tensor]: ...

    def step_of_update(self, optimizer: torch.optim.Optimizer) -> None: ...

    def save_diverged_state(self, iteration: int, no_op_steps: int = 0) -> Path: ...

POLICIES = ("stop", "skip")
CHECKS = ("loss", "gradients", "weights")  # the order of each update's flags
COMPACT_EVERY = 512  # updates between boundaries kept as separate flag tensors before they are stacked into one


def optimized_parameters(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """The parameters an optimizer updates: a list at hand, not a walk over the module tree every update."""
    return [parameter for group in optimizer.param_groups for parameter in group["params"]]


def update_norms(parameters: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(norm of the gradients, norm of the weights) of `parameters`, in one fused pass and without a host sync:
    what the guard checks and the GAN logs, on every update."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    norms = foreach_norm([*gradients, *parameters])
    if len({norm.device for norm in norms}) > 1:  # a model spread over devices: gather the norms on one
        norms = [norm.to(parameters[0].device) for norm in norms]
    grad_norm = torch.linalg.vector_norm(torch.stack(norms[:len(gradients)])) if gradients else torch.zeros(())
    return grad_norm, torch.linalg.vector_norm(torch.stack(norms[len(gradients):]))


def _torch_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer behind Lightning's `LightningOptimizer` wrapper (attributes set on the wrapper do not
    reach it)."""
    return getattr(optimizer, "optimizer", optimizer)


class Snapshot:
    """Copies of a fixed list of tensors, refreshed by `save()`, that `restore_where(go)` puts back where the device
    flag `go` is false - in a few kernels whatever the number of tensors: the tensors are read through flat views
    of their memory, gathered into one buffer per device and dtype (one `cat`), selected with one `torch.where` and
    scattered back with one fused copy. `torch.where` is exact and NaN-safe (a lerp or a product by 0 would keep a
    NaN). Built once per list: the views and buffers are reused at every update."""

    def __init__(self, tensors: list[Tensor]) -> None:
        self.groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        self.loose: list[Tensor] = []  # tensors without a flat view of their memory (e.g. a transposed weight)
        for tensor in tensors:
            view = _flat_view(tensor.detach())
            if view is None:
                self.loose.append(tensor.detach())
            else:
                self.groups.setdefault((tensor.device, tensor.dtype), []).append(view)
        self.sizes = {key: [view.numel() for view in views] for key, views in self.groups.items()}
        self.saved = {key: torch.empty(sum(self.sizes[key]), dtype=key[1], device=key[0]) for key in self.groups}
        self.saved_loose: list[Tensor] = []

    def save(self) -> None:
        with torch.no_grad():
            for key, views in self.groups.items():
                torch.cat(views, out=self.saved[key])
            self.saved_loose = [tensor.clone() for tensor in self.loose]

    def restore_where(self, go: Tensor) -> None:
        with torch.no_grad():
            for key, views in self.groups.items():
                kept = torch.cat(views)
                torch.where(go.to(key[0]), kept, self.saved[key], out=kept)
                copy_all(views, list(kept.split(self.sizes[key])))
            for tensor, saved in zip(self.loose, self.saved_loose):
                tensor.copy_(torch.where(go.to(tensor.device), tensor, saved))


def _flat_view(tensor: Tensor) -> Tensor | None:
    """A 1-D view of all of a dense tensor's memory, in memory order (channels-last weights included), or None."""
    if tensor.is_contiguous():
        return tensor.view(-1)
    if tensor.is_contiguous(memory_format=torch.channels_last):
        return tensor.as_strided((tensor.numel(),), (1,), tensor.storage_offset())
    return None


def _scaler(module: GuardedModule) -> object | None:
    """The float16 GradScaler of the module's training, if any."""
    return getattr(module.trainer.precision_plugin, "scaler", None)


def _creates_state_uninitialised(optimizer: torch.optim.Optimizer) -> bool:
    """Fused SGD with momentum makes its momentum buffers with `empty_like` in its first step and fills them in the
    kernel, which `found_inf` skips: a skipped first step would leave them uninitialised. That step goes through the
    snapshot instead (which zeroes state a skipped step created)."""
    if not isinstance(optimizer, torch.optim.SGD):
        return False
    return any(group["momentum"] and any("momentum_buffer" not in optimizer.state.get(p, {}) for p in group["params"])
               for group in optimizer.param_groups)


class _StepMask:
    """What makes one optimizer's step undoable: the snapshot of its parameters and state on the flag's device
    (a host-side step counter of a non-fused optimizer on a GPU is not among them: it counts a skipped step),
    rebuilt when the optimizer's state changes shape (its first step, a loaded checkpoint)."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        self.optimizer, self.device = optimizer, device
        self.key = self.state_key()
        self.state = self.state_tensors()
        self.snapshot = Snapshot([*optimized_parameters(optimizer), *self.state])

    def state_key(self) -> tuple[int, int]:
        state = self.optimizer.state
        return id(state), sum(len(values) for values in state.values())

    def state_tensors(self) -> list[Tensor]:
        state = self.optimizer.state
        return [value for parameter in optimized_parameters(self.optimizer)
                for value in state.get(parameter, {}).values()
                if isinstance(value, Tensor) and value.device == self.device]

    def undo_where(self, go: Tensor) -> None:
        """After the step: put everything back where `go` is false. State the step created (the first step's
        moments) is zeroed there."""
        self.snapshot.restore_where(go)
        if self.state_key() != self.key:
            known = {id(value) for value in self.state}
            with torch.no_grad():
                for value in self.state_tensors():
                    if id(value) not in known:
                        value.copy_(torch.where(go, value, torch.zeros_like(value)))


class DivergenceGuard:
    """Checks every update before it is applied and acts on the policy at the next boundary.

    Args:
        policy: "stop" keeps the state from before the first non-finite update, saves it as
            `checkpoints/diverged-iteration_N.ckpt` at the next boundary and ends the run with one line naming
            iteration N and the side; "skip" leaves each bad update out and counts it (`skipped_updates`, logged as
            `divergence/skipped_updates`). Non-finite weights stop the run even in skip mode: skipping updates
            cannot repair them.
    """

    def __init__(self, policy: str = "stop") -> None:
        if policy not in POLICIES:
            raise GenlabError(f"model.on_divergence must be 'stop' or 'skip', got {policy!r}")
        self.policy: Literal["stop", "skip"] = policy  # type: ignore[assignment]
        self.skipped_updates = 0  # as of the last boundary
        self.loss: Tensor | None = None  # the loss of the update under way (automatic optimization)
        self.buffer_list: list[Tensor] | None = None  # the model's buffers, found once per stage
        self.good_buffers: Snapshot | None = None
        self.stopped = False  # a stop was reported: nothing more to settle
        self._running: Tensor | None = None  # device flag: no update has stopped the run
        self._flags: list[Tensor] = []  # per update since the last boundary: finite (loss, gradients, weights)
        self._updates: list[tuple[int, str]] = []  # (iteration, side) of each of those updates
        self._sides: dict[str, list[Tensor]] = {}  # the parameters of each side, for the weight check at boundaries
        self._pending: tuple[torch.optim.Optimizer, _StepMask | None, Tensor] | None = None  # automatic: under way
        self._masks: dict[int, _StepMask] = {}  # per optimizer, reused while its state keeps its shape
        self._settling = False
        self._clean = True  # no update since the last boundary

    def new_stage(self) -> None:
        """Find the buffers again at the next update: modules may have been replaced since the last stage."""
        self.buffer_list = self.good_buffers = None
        self._sides, self._flags, self._updates, self._masks = {}, [], [], {}
        self._running, self._clean, self.stopped = None, True, False

    def remember_buffers(self, module: torch.nn.Module) -> None:
        """Copy the buffers (BatchNorm running statistics) before a forward pass changes them in place.

        A non-finite forward pass spoils them before any check can run; a skipped update puts the copies back,
        so it leaves no trace and a diagnostic checkpoint holds the last good statistics. Models without
        buffers pay nothing.
        """
        if self.buffer_list is None:
            self.buffer_list = list(module.buffers())
            self.good_buffers = Snapshot(self.buffer_list) if self.buffer_list else None
        if self.good_buffers is not None:
            self.good_buffers.save()

    def _restore_buffers(self, go: Tensor) -> None:
        if self.good_buffers is not None:
            self.good_buffers.restore_where(go)

    def _decide(self, module: GuardedModule, side: str, loss: Tensor | None, parameters: list[Tensor],
                norms: tuple[Tensor, Tensor] | None) -> Tensor:
        """The device flag `go` of this update; its checks are kept for the next boundary."""
        grad_norm, weight_norm = norms if norms is not None else update_norms(parameters)
        device = weight_norm.device
        if _scaler(module) is not None:
            grad_norm = None  # under float16 the GradScaler skips overflowing steps itself
        values = [loss.detach() if loss is not None else None, grad_norm, weight_norm]
        if None in values:  # what is not checked counts as finite
            unchecked = torch.zeros((), device=device)
            values = [unchecked if value is None else value for value in values]
        finite = torch.isfinite(torch.stack([value.to(device, torch.float32) for value in values]))
        if module.trainer.world_size > 1:  # every process takes the same decision, without waiting on the host
            finite = finite.to(torch.int32)
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
            finite = finite.bool()
        if self._running is None or self._running.device != device:
            self._running = torch.ones((), dtype=torch.bool, device=device)
        ok = finite.all()
        if self.policy == "stop":
            self._running = self._running & ok
            go = self._running
        else:
            self._running = self._running & finite[2]
            go = ok & self._running
        self._sides.setdefault(side, parameters)
        self._updates.append((module.iteration, side))
        self._flags.append(finite)
        self._clean = False
        if len(self._flags) >= COMPACT_EVERY:
            self._flags = [torch.cat([flags.reshape(-1, len(CHECKS)) for flags in self._flags])]
        return go

    def step(self, module: GuardedModule, side: str, optimizer: torch.optim.Optimizer, loss: Tensor | None,
             norms: tuple[Tensor, Tensor] | None = None, also: Callable[[], None] | None = None) -> Tensor:
        """`optimizer.step()` (then `also()`, e.g. weight clipping) unless this update or, under "stop", an earlier
        one is non-finite; the BatchNorm statistics the forward pass changed are put back then. Returns the device
        flag of whether the step was taken. Call it after backward; it never reads a value on the host."""
        go = self._decide(module, side, loss, optimized_parameters(optimizer), norms)
        mask = self._prepare(module, optimizer, go, exact_by_copies=also is not None)
        try:
            module.step_of_update(optimizer)
            if also is not None:
                also()
        finally:
            self._finish(optimizer, mask, go)
        return go

    def _prepare(self, module: GuardedModule, optimizer: torch.optim.Optimizer, go: Tensor,
                 exact_by_copies: bool) -> _StepMask | None:
        """Make the coming step undoable: `found_inf` where the optimizer is fused (it then skips itself, weights,
        moments and step count alike), else a snapshot of its parameters and state (`_StepMask`); also under
        float16, whose GradScaler sets and removes `found_inf` itself."""
        optimizer = _torch_optimizer(optimizer)
        exact_by_copies = exact_by_copies or _scaler(module) is not None or _creates_state_uninitialised(optimizer)
        if not exact_by_copies and steps_on_device_flag(optimizer):
            optimizer.found_inf = torch.logical_not(go).to(torch.float32)  # type: ignore[attr-defined]
            return None
        mask = self._masks.get(id(optimizer))
        if mask is None or mask.optimizer is not optimizer or mask.device != go.device or mask.state_key() != mask.key:
            mask = self._masks[id(optimizer)] = _StepMask(optimizer, go.device)
        mask.snapshot.save()
        return mask

    def _finish(self, optimizer: torch.optim.Optimizer, mask: _StepMask | None, go: Tensor) -> None:
        if mask is None:
            vars(_torch_optimizer(optimizer)).pop("found_inf", None)
        else:
            mask.undo_where(go)
        self._restore_buffers(go)

    def before_automatic_step(self, module: GuardedModule, optimizer: torch.optim.Optimizer) -> None:
        """Automatic optimization, between backward and Lightning's `optimizer.step()`: decide and prepare."""
        go = self._decide(module, "model", self.loss, optimized_parameters(optimizer), None)
        self._pending = (optimizer, self._prepare(module, optimizer, go, exact_by_copies=False), go)

    def after_automatic_step(self) -> None:
        if self._pending is not None:
            self._finish(*self._pending)
            self._pending = None

    def settle(self, module: GuardedModule) -> None:
        """A boundary: read the checks of every update since the last one (one host sync) and act on them. Also
        checks the current weights, so no checkpoint is written with weights a last update made non-finite."""
        if self.stopped or self._settling or self._clean:
            return
        self._clean = True
        weights = [torch.linalg.vector_norm(torch.stack(foreach_norm(parameters))).to(self._device())
                   for parameters in self._sides.values()]
        flags = [flags.reshape(-1, len(CHECKS)) for flags in self._flags]
        rows = torch.cat(flags).tolist() if flags else []
        weights_finite = torch.isfinite(torch.stack(weights)).tolist() if weights else []
        updates, self._flags, self._updates = self._updates, [], []
        self._act(module, updates, rows, dict(zip(self._sides, weights_finite)))

    def _device(self) -> torch.device:
        return self._running.device if self._running is not None else torch.device("cpu")

    def _act(self, module: GuardedModule, updates: list[tuple[int, str]], rows: list[list[bool]],
             weights_finite: dict[str, bool]) -> None:
        """Replays the device's decisions on the host: the first stopping update, the skipped ones."""
        skipped: list[tuple[int, str]] = []
        for index, ((iteration, side), finite) in enumerate(zip(updates, rows)):
            if all(finite):
                continue
            broken = [name for name, good in zip(CHECKS, finite) if not good]
            if self.policy == "stop" or "weights" in broken:  # this update and every later one were no-ops
                no_ops = sum(1 for later, _ in updates[index:] if later == module.iteration) if (
                    batch_under_way(module.trainer)) else 0  # a finished batch stays counted, its steps too
                self._stop(module, iteration, side, broken, skipped, no_ops)
            skipped.append((iteration, side))
        for side, finite in weights_finite.items():
            if not finite:
                self._stop(module, module.iteration, side, ["weights"], skipped)
        self._count_skipped(skipped)

    def _count_skipped(self, skipped: list[tuple[int, str]]) -> None:
        before = self.skipped_updates
        self.skipped_updates += len(skipped)
        if skipped and (self.skipped_updates).bit_length() > before.bit_length():  # 1, 2, 4, 8, …: a trace
            iteration, side = skipped[0]
            rank_zero_warn(f"iteration {iteration}: non-finite {side} update skipped ({self.skipped_updates} so far)")

    def _stop(self, module: GuardedModule, iteration: int, side: str, broken: list[str],
              skipped: list[tuple[int, str]], no_op_steps: int = 0) -> None:
        self._count_skipped(skipped)
        self.stopped, self._settling = True, True
        try:
            saved = module.save_diverged_state(iteration, no_op_steps)
        finally:
            self._settling = False
        raise GenlabError(self.stop_message(iteration, side, broken, saved))

    @staticmethod
    def stop_message(iteration: int, side: str, broken: list[str], saved: object) -> str:
        """The one line a stopped run ends with."""
        start = f"training diverged at iteration {iteration}: the {side}"
        if "weights" in broken:  # an earlier update overflowed although its loss and gradients were finite
            return (f"{start} weights are NaN or infinite (the state is saved for inspection in {saved});"
                    " lower the learning rate")
        what = " and ".join(broken) + (" is" if broken == ["loss"] else " are") + " NaN or infinite"
        return (f"{start} {what}; the last good state is saved in {saved}; lower the learning rate, or set"
                " model.init_args.on_divergence: skip")
