"""The one place genlab reads or edits private state of Lightning, jsonargparse and torch. Each use is pinned by
tests/test_runtime.py, so a release that moves one fails there, by name, instead of silently shifting a schedule,
a resume or an error message. Everything else in genlab uses public names only, including the ones this module
gives (`attached_trainer`, `CheckpointHooks`, `CLIHooks`, …)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI


def answer_gpu_checks_once_without_gpus() -> None:
    """Stop every optimizer step from probing for GPUs anew on a machine that has none.

    Lightning sets `PYTORCH_NVML_BASED_CUDA_CHECK=1` when imported (so that checks do not initialise CUDA before
    a fork); with it, each `torch.cuda.is_available()` loads NVML afresh until CUDA is initialised, and every torch
    optimizer step asks (`Optimizer._accelerator_graph_capture_health_check`): 80-250 µs per step on a CUDA build
    of torch without a GPU, a tenth of a small model's iteration. Where NVML counts no GPU there is no CUDA to
    initialise, so torch's plain check - answered once by the runtime - is equivalent. Call it in every process
    (a DDP process imports Lightning again); with a GPU present it changes nothing.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


def iterations_done(trainer: L.Trainer) -> int:
    """Training batches processed so far, across epochs and resumes.

    Under manual optimization `trainer.global_step` counts optimizer steps (a D and a G step make 2), so
    schedules such as "every 200 iterations" count batches instead.
    """
    return trainer.fit_loop.epoch_loop.batch_progress.total.ready


def logging_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning writes step logs at this step (every `log_every_n_steps`)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True)) or bool(trainer.fast_dev_run)


def batch_under_way(trainer: L.Trainer) -> bool:
    """Whether a training batch has begun and not yet finished (inside `training_step` or the hooks around it)."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.total
    return progress.ready > progress.completed


def rewind_batch_progress(checkpoint: dict[str, Any], optimizer_steps: int = 0) -> None:
    """Count the batch in progress as not begun, so a run resumed from a mid-batch checkpoint redoes it under
    its own iteration number (Lightning would count it twice), and take back `optimizer_steps` optimizer steps
    it made (steps the divergence guard turned into no-ops), so `global_step` counts only steps taken."""
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    progress = loops.get("epoch_loop.batch_progress")
    if progress:
        for counts in (progress["total"], progress["current"]):
            counts["ready"] = counts["started"] = counts["completed"]
    manual = loops.get("epoch_loop.manual_optimization.optim_step_progress")
    automatic = loops.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step")
    for steps in (manual, automatic):
        if steps and optimizer_steps:
            for counts in (steps["total"], steps["current"]):
                counts["ready"] = max(0, counts["ready"] - optimizer_steps)
                counts["completed"] = max(0, counts["completed"] - optimizer_steps)
    if optimizer_steps and "global_step" in checkpoint:
        checkpoint["global_step"] = max(0, checkpoint["global_step"] - optimizer_steps)


def keep_an_unfinished_epoch_running(checkpoint: dict[str, Any], trainer: L.Trainer) -> None:
    """A fit stopped by `max_steps` in the middle of an epoch: Lightning marks that epoch finished in the loop state
    it saves at the end, so a resumed run would start the next epoch's data order and skip the rest of this one.
    Count it as still running (as a periodic mid-epoch checkpoint does), so the run resumes at the next batch."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress")
    batches_done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    if not progress or not 0 < batches_done < trainer.num_training_batches:
        return
    for counts in (progress["total"], progress["current"]):
        if counts["processed"] == counts["started"]:
            counts["processed"] = counts["completed"] = counts["started"] - 1


UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def updates_need_no_hooks(trainer: L.Trainer, module: L.LightningModule, known: type,
                          own_strategies: tuple[type, ...] = ()) -> bool:
    """Whether a manual-optimization model may run its backward passes and optimizer steps without Lightning's
    per-call machinery (`manual_backward`, `LightningOptimizer.step`) and still do exactly what Lightning would:
    no callback, and no method of the module beyond `known`'s, overrides a hook those calls run; the precision is
    Lightning's plain or mixed one without a gradient scaler; the strategy calls nothing around backward (one
    device, or one of `own_strategies`, e.g. genlab's `AlternatingUpdatesDDP`); no profiler is timing the steps.
    Each of those calls dispatches three hooks to every callback: host time on every update, which is what a small
    model's iteration is made of on a GPU."""
    from lightning.pytorch.plugins.precision import MixedPrecision, Precision
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.strategies import SingleDeviceStrategy

    if type(trainer.precision_plugin) not in (Precision, MixedPrecision):
        return False
    if getattr(trainer.precision_plugin, "scaler", None) is not None:
        return False
    if type(trainer.strategy) not in (SingleDeviceStrategy, *own_strategies):
        return False
    if not isinstance(trainer.profiler, PassThroughProfiler):
        return False
    for hook in UPDATE_HOOKS:
        if any(getattr(type(callback), hook) is not getattr(L.Callback, hook) for callback in trainer.callbacks):
            return False
        if getattr(type(module), hook) is not getattr(known, hook):
            return False
    return type(module).backward is L.LightningModule.backward


def step_counted(trainer: L.Trainer, optimizer: Any) -> None:
    """`optimizer.step()` of a `LightningOptimizer` without its hooks, counted as Lightning counts it (the manual
    optimization's step progress, which is `trainer.global_step`)."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    progress.increment_ready()
    optimizer.optimizer.step()
    progress.increment_completed()


def first_process() -> bool:
    """Rank zero of the whole job, known before the Trainer exists (from the launcher's environment)."""
    return all(int(os.environ.get(name, "0")) == 0 for name in ("LOCAL_RANK", "NODE_RANK"))


def launched_by_first_process() -> bool:
    """A process Lightning's launcher started for DDP beside the first one on this machine (LOCAL_RANK > 0): it
    takes the first process's decisions (precision, run folder) from the environment it inherited."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The module's trainer, or None when it is not attached to one (`module.trainer` raises then)."""
    return module._trainer


def foreach_norm(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The 2-norm of each tensor in one fused kernel per device (what `torch.nn.utils.get_total_norm` runs)."""
    return list(torch._foreach_norm(tensors))


def copy_all(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """`target.copy_(source)` for every pair, in one fused kernel per device."""
    if targets:
        torch._foreach_copy_(targets, sources)


def move_all_towards(targets: list[torch.Tensor], sources: list[torch.Tensor], weight: float | torch.Tensor) -> None:
    """`target += weight * (source - target)` for every pair (lerp), fused. A tensor `weight` is applied as a
    factor on the device: `_foreach_lerp_` would read it on the host."""
    if isinstance(weight, float):
        torch._foreach_lerp_(targets, sources, weight)
        return
    steps = torch._foreach_sub(sources, targets)
    torch._foreach_mul_(steps, weight)
    torch._foreach_add_(targets, steps)


def clamp_all(tensors: list[torch.Tensor], bound: float) -> None:
    """Every tensor clamped to [-bound, bound] in place, fused."""
    torch._foreach_clamp_min_(tensors, -bound)
    torch._foreach_clamp_max_(tensors, bound)


def fused_kernel_devices() -> tuple[str, ...]:
    """The device types torch's fused optimizers run on in this torch (CUDA always; the CPU from torch 2.4)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:
        return ("cuda",)
    return tuple(_get_fused_kernels_supported_devices())


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs in on `device_type` right here, or None outside autocast (torch 2.2-2.3 name these
    functions per device)."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    if not enabled:
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


#: the dispatch behind every read of a tensor's value on the host (`.item()`, `bool(t)`, …): `genlab.host_syncs`
HOST_READ_OP = torch.ops.aten._local_scalar_dense.default


def _cpuinfo_field(names: tuple[str, ...]) -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return None


def cpu_bf16_instructions() -> bool | None:
    """Whether the CPU lists bf16 arithmetic among its instructions (x86: avx512_bf16 or amx_bf16; Arm: bf16), or
    None where the system does not say (no /proc/cpuinfo)."""
    flags = _cpuinfo_field(("flags", "Features"))
    return None if flags is None else bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags.split()))


def cpu_model() -> str:
    """The CPU's model name, as the system gives it (for telling machines apart in caches and records)."""
    import platform

    return _cpuinfo_field(("model name", "Model", "Hardware")) or platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 natively: oneDNN supports it and the CPU has bf16 instructions. oneDNN's
    "supported" alone is also true on AVX-512 CPUs without them, which emulate bf16 (slowly)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and cpu_bf16_instructions() is not False


def runnable_tasks() -> tuple[int, int] | None:
    """Runnable tasks now (Linux's `procs_running`) on the whole machine and among this process's own threads
    (state R in /proc/self/task), or None where /proc does not say: the difference is what else wants a CPU."""
    try:
        with open("/proc/stat") as stat:
            machine = next(int(line.split()[1]) for line in stat if line.startswith("procs_running"))
        own = 0
        for task in Path("/proc/self/task").iterdir():
            try:  # the state follows the command name, which may itself hold spaces or parentheses
                own += (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):  # a thread that ended meanwhile
                continue
    except (OSError, ValueError, StopIteration):
        return None
    return machine, own


class CheckpointHooks(ModelCheckpoint):
    """ModelCheckpoint with public names for what genlab's `RunCheckpoint` needs: a hook before every save of
    `last.ckpt` (whatever schedule triggers it) and saves outside the schedule."""

    def before_saving_last(self, trainer: L.Trainer) -> None:
        """Called before each save of `last.ckpt`; nothing by default."""

    def may_save(self, trainer: L.Trainer) -> bool:
        """False where Lightning saves nothing (fast_dev_run, sanity check, a save at this step already made)."""
        return not self._should_skip_saving_checkpoint(trainer)

    def save_now(self, trainer: L.Trainer, top_k: bool = True) -> Path:
        """Save `last.ckpt` (and the top-k checkpoint when `top_k`) now; returns the path of `last.ckpt`."""
        candidates = self._monitor_candidates(trainer)
        if top_k:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
        return Path(self.dirpath or ".") / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        self.before_saving_last(trainer)
        super()._save_last_checkpoint(trainer, monitor_candidates)


class CLIHooks(LightningCLI):
    """LightningCLI with public names for what `GenlabCLI` needs: a configured value by its dotted key, and the
    callbacks the Trainer is built with."""

    def setting(self, key: str, default: Any = None) -> Any:
        """The instantiated configuration's value at `key` (e.g. "trainer.strategy") for this subcommand."""
        return self._get(self.config_init, key, default)

    def trainer_callbacks(self, trainer_config: dict[str, Any], callbacks: list[Any]) -> list[Any]:
        """The callbacks the Trainer gets, from the ones the configuration names; all of them by default."""
        return callbacks

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> L.Trainer:
        return super()._instantiate_trainer(config, self.trainer_callbacks(config, callbacks))

    def _parse_ckpt_path(self) -> None:
        """Lightning lets the hyperparameters of a checkpoint file override the configuration; a fit keeps the
        configuration (a resume says what differs from its run's, `genlab.cli.config_changes`); test and predict
        keep Lightning's way (the checkpoint decides the architecture)."""
        if self.config.get("subcommand") != "fit":
            super()._parse_ckpt_path()


_PARSER_NOISE = ("Does not validate against any of", "Subtypes:", "Errors:", "Given value",
                 "Expected a <class 'NoneType'>")


def summarize_parser_error(message: str) -> str:
    """jsonargparse's nested, multi-line (English) error text → one line: the config key, what is wrong, where to
    look."""
    lines = [line.strip().lstrip("-").strip() for line in message.splitlines()]
    if len(lines) == 1:
        return f"{lines[0]}; `genlab <subcommand> --help` lists the accepted options"
    keys, owner, detail = [], None, None
    for line in lines:
        if match := re.match(r'Parser key "([^"]+)":?\s*(.*)', line):
            keys.append(match[1])
            detail = detail or match[2] or None
        elif match := re.match(r"Problem with given class_path '([^']+)'", line):
            owner = match[1]
        elif line and not line.startswith(_PARSER_NOISE) and detail is None:
            detail = line
    choices = next((match[1] for line in lines if (match := re.match(r"Expected a typing\.Literal\[(.*)\]", line))),
                   None)
    given = next((match[1] for line in lines if (match := re.match(r"Given value: (?!NestedArg)(.*)", line))), None)
    if choices and given is not None:  # a name outside a Literal (e.g. a loss name): say the names
        detail = f"{given!r} is not one of {choices}"
    where = f" ({owner})" if owner else ""
    return f"config key {'.'.join(keys)}: {detail}{where}; `genlab fit --print_config` shows the accepted keys"
