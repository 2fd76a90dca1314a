"""The automatic fast path: precision, memory layout and TF32, one gate for every device.

A `genlab fit` that names no `trainer.precision` gets the precision chosen below; `memory_format: auto` (the
default) gets the layout. An explicit setting always wins. `test`, `validate` and `predict` default to fp32, so
a checkpoint scores the same on every machine.

The gate (`bf16_refusal`): bf16-mixed is chosen automatically only for a model whose bf16 runs are on record as
scoring like its fp32 runs: it has a `timing_pass` and its `automatic_bf16` is True (GANs with a loss whose
`bf16_on_record` is True - non-saturating minimax, least squares - and without weight clipping or a gradient
penalty; not the WGANs, not the VAE, and not the DAE or the evaluation classifiers). A model that says nothing is
fp32: opt-in, a new model is fp32 until shown. fp16 is never chosen automatically. Where the gate is passed:

- CUDA: bf16-mixed where the GPU has native bf16 (Ampere and newer), else fp32; not timed (tensor cores run bf16
  matmuls and convolutions faster than fp32); the layout is left contiguous.
- CPU: the model's own networks (`timing_pass`), forward and backward at the training batch size, are timed in
  fp32 and, where the CPU has native bf16 (oneDNN supports it and the CPU lists bf16 instructions), in bf16
  autocast, each in contiguous and (for convolutional models) channels-last layout (`measure_paths`, a few
  seconds). bf16-mixed is chosen only where its best layout is at least `MIN_SPEEDUP` times faster than fp32's best
  (on a CPU without native bf16, AVX2 only, bf16 matmuls are ~70x slower, so it is never timed); channels-last
  only where it beats contiguous by `MIN_LAYOUT_GAIN`. Measured once per CPU model, torch version, network and
  batch size and kept in `~/.cache/genlab`, so one command makes the same choice on one machine every time; a
  timing taken on a busy machine (another task wanting a CPU, or a high load average) is not kept. Models without
  a `timing_pass` are not timed: fp32, contiguous.
- Anything else (MPS, XLA …): fp32, contiguous.

| model                                 | CPU: native bf16, 1.5x faster | other CPU | CUDA: native bf16 | other CUDA |
|---------------------------------------|-------------------------------|-----------|-------------------|------------|
| GAN: non-saturating or least squares  | bf16-mixed                    | fp32      | bf16-mixed        | fp32       |
| GAN: other losses, clipping, penalty  | fp32                          | fp32      | fp32              | fp32       |
| VAE, DAE, classifiers                 | fp32                          | fp32      | fp32              | fp32       |

TF32 (CUDA only; `--tf32`, default false): off for matmuls and cuDNN convolutions alike (PyTorch's own default
allows it in convolutions). TF32 rounds fp32 inputs to a 10-bit mantissa, a reduced precision like bf16's, and
no model's TF32 runs are on record, so by the same gate "32-true" means IEEE fp32 on a GPU as on a CPU and a
checkpoint scores the same everywhere. Under bf16-mixed the matmuls and convolutions run in bf16 anyway.
`--tf32 true` asks for it (refused off CUDA, where it means nothing; the CPU records false).

The choice is printed at start and written into the run's `config.yaml` (`trainer.precision`, `memory_format`,
`tf32`); the precision and the whole choice also into the checkpoints and every score record (`trained_in_precision`,
`trained_with_fast_paths`). Processes
that Lightning starts for DDP inherit the first process's choice (through `CHOICE_VARIABLE`), so all ranks train
alike.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info

from genlab.cache import cache_root
from genlab.rng import isolated_rng
from genlab.runtime import cpu_has_native_bf16, cpu_model, launched_by_first_process, runnable_tasks

#: bf16 on a CPU must pay clearly: a probe speedup of 1.5 was ~1.3x per whole training iteration on an
#: AVX-512-BF16 CPU (benchmarks/throughput.py); below it the gain is small and not worth a second numerics
MIN_SPEEDUP = 1.5
#: channels-last must beat contiguous by this much: below it the layout conversions eat the gain
MIN_LAYOUT_GAIN = 1.1
CHOICE_VARIABLE = "GENLAB_AUTO_PRECISION"  # "precision|layout|tf32|why" set by the first process, read by DDP children
FP32, BF16 = "32-true", "bf16-mixed"
CONTIGUOUS, CHANNELS_LAST = "contiguous", "channels_last"


@dataclass(frozen=True)
class FastPath:
    precision: str  # a Lightning precision: "bf16-mixed" or "32-true"
    memory_format: str  # "contiguous" or "channels_last"
    reason: str
    tf32: bool | None = None  # TF32 in CUDA matmuls and convolutions; None off CUDA, where it means nothing

    def describe(self) -> str:
        if self.tf32 is None:
            return (f"genlab: precision {self.precision}, memory format {self.memory_format} (automatic:"
                    f" {self.reason}; --trainer.precision and --memory_format override it)")
        return (f"genlab: precision {self.precision}, memory format {self.memory_format}, TF32"
                f" {'on' if self.tf32 else 'off'} (automatic: {self.reason}; --trainer.precision, --memory_format"
                " and --tf32 override it)")


def _is_convolutional(model: torch.nn.Module) -> bool:
    return any(parameter.dim() == 4 for parameter in model.parameters())


def _optimizers(module: torch.nn.Module) -> list[torch.optim.Optimizer]:
    """The optimizers `configure_optimizers` builds (a list, one, or Lightning's dict forms); none if it cannot."""
    try:
        built = module.configure_optimizers()
    except Exception:  # noqa: BLE001 - a module that needs its trainer to build optimizers is timed without them
        return []
    built = built if isinstance(built, (list, tuple)) else [built]
    found = [entry.get("optimizer") if isinstance(entry, dict) else entry for entry in built]
    return [optimizer for optimizer in found if isinstance(optimizer, torch.optim.Optimizer)]


def measure_paths(model: torch.nn.Module, batch_size: int, bf16: bool, passes: int = 3) -> dict[str, float]:
    """Seconds per forward and backward pass of the model's own networks (its `timing_pass`) at the training batch
    size on the CPU, followed by a step of each of its optimizers (the same cost on every path, as in training,
    where it dilutes what bf16 gains), per path "<precision> <layout>": fp32 and (if `bf16`) bf16 autocast,
    contiguous and (for convolutional models) channels-last. Whether a path pays depends on the layer sizes: a
    2-D toy GAN's tiny layers lose to bf16's casts, a DCGAN's convolutions gain ~2x.

    Each path runs in a block of `passes` after one warm-up pass, as training runs it (paths timed in turns,
    pass by pass, hide channels-last's gain: oneDNN then keeps switching layouts); the blocks go forward, then
    backward, and each path's fastest pass counts (interference from a busy neighbour only ever adds time). Copies
    are timed, with the random-number streams put back afterwards, so the run itself is untouched."""
    precisions = [FP32, BF16] if bf16 else [FP32]
    layouts = [CONTIGUOUS, CHANNELS_LAST] if _is_convolutional(model) else [CONTIGUOUS]
    paths = [(precision, layout) for precision in precisions for layout in layouts]
    times: dict[tuple[str, str], list[float]] = {path: [] for path in paths}
    with isolated_rng(), torch.enable_grad():  # training passes, even when the CLI is built under no_grad
        contiguous = copy.deepcopy(model).cpu().train()
        probes = {CONTIGUOUS: contiguous}
        if CHANNELS_LAST in layouts:
            probes[CHANNELS_LAST] = copy.deepcopy(contiguous).to(memory_format=torch.channels_last)
        optimizers = {layout: _optimizers(probe) for layout, probe in probes.items()}
        for precision, layout in [*paths, *reversed(paths)]:
            probe = probes[layout]
            for index in range(passes + 1):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == BF16):
                    output = probe.timing_pass(batch_size)
                output.float().square().mean().backward()
                for optimizer in optimizers[layout]:
                    optimizer.step()
                probe.zero_grad(set_to_none=True)
                if index:
                    times[precision, layout].append(time.perf_counter() - start)
    return {f"{precision} {layout}": min(values) for (precision, layout), values in times.items()}


def cache_file() -> Path:
    """Where measurements are kept, in genlab's cache folder (`genlab.cache.cache_root`)."""
    return cache_root() / "fast_paths.json"


def runnable_neighbours(samples: int = 5) -> int | None:
    """Tasks of other processes that want a CPU now: the fewest over a few samples 20 ms apart (a short-lived task
    is not a neighbour), this process's own runnable threads left out; None where the system does not say."""
    counts = []
    for _ in range(samples):
        time.sleep(0.02)
        tasks = runnable_tasks()
        if tasks is None:
            return None
        counts.append(max(tasks[0] - tasks[1], 0))
    return min(counts)


def spare_cores() -> int:
    """The cores this process may use beyond its own torch threads: neighbours up to that many take nothing from
    a timing."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(cores - torch.get_num_threads(), 0)


def busy_load() -> str | None:
    """Why a timing taken now would measure the neighbours as much as bf16: more other tasks wanting a CPU than
    there are spare cores (benchmarks/precision_under_load.py times the gain beside spinning neighbours), or a
    1-minute load above the core count; None when the machine is quiet."""
    cores = os.cpu_count() or 1
    neighbours, spare = runnable_neighbours(), spare_cores()
    if neighbours is not None and neighbours > spare:
        return (f"{neighbours} other task{'s' if neighbours > 1 else ''} wanting a CPU, {spare} core"
                f"{'' if spare == 1 else 's'} spare beside this process's {torch.get_num_threads()} threads")
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return f"load {load:.1f} on {cores} cores" if load > cores else None


def remembered_paths(model: torch.nn.Module, batch_size: int, bf16: bool) -> dict[str, float | str]:
    """`measure_paths`, measured once per CPU model, its bf16 support, torch version, network and batch size, then
    read back: a model near a threshold would otherwise train one way one day and the other way the next, from one
    command. A measurement taken on a busy machine is used once and not remembered (its result then carries
    "busy", why), so one loaded moment does not decide every later run."""
    fingerprint = (f"{cpu_model()} {cpu_has_native_bf16()} {torch.backends.cpu.get_cpu_capability()}"
                   f" {torch.get_num_threads()} threads {torch.__version__} {batch_size} {bf16} {model!r}")
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    path = cache_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), dict):
        return known[key]
    rank_zero_info(f"genlab: timing {type(model).__name__} at batch {batch_size} in fp32{' and bf16' if bf16 else ''}"
                   " for the automatic precision and layout (once per machine and setting; --trainer.precision with"
                   " --memory_format skips it)")
    measured = measure_paths(model, batch_size, bf16)
    if (busy := busy_load()) is not None:
        return {**measured, "busy": busy}
    try:  # a cache that cannot be written only means measuring again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps({**known, key: measured}))
        partial.replace(path)
    except OSError:
        pass
    return measured


def fastest_layout(times: dict[str, float | str], precision: str) -> tuple[str, float]:
    """The layout genlab would train `precision` in, and its time: channels-last only where it wins by
    `MIN_LAYOUT_GAIN`."""
    contiguous = times[f"{precision} {CONTIGUOUS}"]
    channels_last = times.get(f"{precision} {CHANNELS_LAST}", float("inf"))
    if channels_last * MIN_LAYOUT_GAIN <= contiguous:
        return CHANNELS_LAST, channels_last
    return CONTIGUOUS, contiguous


def _native_cuda_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.4 has no emulation to exclude
        return torch.cuda.is_bf16_supported()


def trains_on_cuda(accelerator: str | None) -> bool:
    """Whether Lightning's `accelerator` ("auto", "cpu", "gpu" …) means a CUDA GPU here."""
    accelerator = (accelerator or "auto").lower()
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def apply_tf32(allowed: bool) -> None:
    """Set TF32 for CUDA matmuls and cuDNN convolutions both ways, explicitly: PyTorch's defaults differ between
    the two (matmuls off, convolutions on), and a run should not depend on what ran before it in the process."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def bf16_refusal(model: torch.nn.Module | None) -> str | None:
    """The one gate for every device: why bf16 may not be chosen automatically for `model`, or None where its
    bf16 runs are on record as scoring like fp32 (`automatic_bf16`; a model that says nothing stays fp32)."""
    if model is None:
        return "no model to check"
    if not hasattr(model, "timing_pass"):
        return f"{type(model).__name__} has no bf16 runs on record (only generative models have)"
    if not getattr(model, "automatic_bf16", False):
        return f"{type(model).__name__}'s scores in bf16 are not shown to match fp32"
    return None


def _on_cuda(precision: str, reason: str, tf32: bool) -> FastPath:
    """A CUDA path: contiguous (nothing measured a gain from channels-last on a GPU), TF32 and why in the reason."""
    why = "asked for" if tf32 else "fp32 stays IEEE fp32, as on a CPU"
    return FastPath(precision, CONTIGUOUS, f"{reason}; TF32 {'on' if tf32 else 'off'}: {why}", tf32)


def choose_fast_path(accelerator: str | None, subcommand: str | None = "fit", model: torch.nn.Module | None = None,
                     batch_size: int = 64, precision: str | None = None, tf32: bool = False) -> FastPath:
    """The automatic path for training `model` on `accelerator` (Lightning's name: "auto", "cpu", "gpu" …);
    `precision` given by the user is kept, and only the layout is chosen for it; `tf32` (the user's, default
    off) is carried on CUDA and None elsewhere."""
    inherited = os.environ.get(CHOICE_VARIABLE, "").split("|", 3)
    if len(inherited) == 4 and launched_by_first_process():
        return FastPath(inherited[0], inherited[1], inherited[3], {"on": True, "off": False}.get(inherited[2]))
    cuda = trains_on_cuda(accelerator)
    if subcommand != "fit":
        reason = f"genlab {subcommand} evaluates the same on every machine"
        return _on_cuda(precision or FP32, reason, tf32) if cuda else FastPath(precision or FP32, CONTIGUOUS, reason)
    if cuda:
        return _cuda_path(model, precision, tf32)
    accelerator = (accelerator or "auto").lower()
    if accelerator not in ("cpu", "auto"):
        return FastPath(precision or FP32, CONTIGUOUS, f"accelerator {accelerator}")
    return _cpu_path(model, batch_size, precision)


def _cuda_path(model: torch.nn.Module | None, precision: str | None, tf32: bool) -> FastPath:
    if precision is not None:
        return _on_cuda(precision, "precision given", tf32)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "the GPU"
    if not (torch.cuda.is_available() and _native_cuda_bf16()):
        return _on_cuda(FP32, f"{device} has no native bf16", tf32)
    if (refusal := bf16_refusal(model)) is not None:
        return _on_cuda(FP32, f"{device} has native bf16 but {refusal}", tf32)
    return _on_cuda(BF16, f"{device} has native bf16 and {type(model).__name__}'s bf16 runs score like fp32"
                          " (not timed: tensor cores run bf16 faster than fp32)", tf32)


def _cpu_path(model: torch.nn.Module | None, batch_size: int, precision: str | None) -> FastPath:
    capability = torch.backends.cpu.get_cpu_capability()
    if model is None or not hasattr(model, "timing_pass"):
        return FastPath(precision or FP32, CONTIGUOUS, f"CPU {capability}: only generative models are timed")
    native = cpu_has_native_bf16()
    wanted = {FP32: FP32, "32": FP32, 32: FP32, BF16: BF16, "bf16": BF16}.get(precision or FP32)
    if precision is not None and wanted is None:  # fp16, fp64 …: not timed, the layout stays
        return FastPath(precision, CONTIGUOUS, "precision given")
    refusal = bf16_refusal(model)
    bf16_allowed = native and refusal is None  # may be chosen when no precision is given
    times = remembered_paths(model, batch_size, bf16=(bf16_allowed and precision is None) or wanted == BF16)
    choice = _timed_choice(times, capability, native, refusal, precision, wanted)
    if "busy" in times:
        return replace(choice, reason=f"{choice.reason}; timed while the machine was busy ({times['busy']}), so not"
                                      " remembered")
    return choice


def _timed_choice(times: dict[str, float | str], capability: str, native: bool, refusal: str | None,
                  precision: str | None, wanted: str | None) -> FastPath:
    if precision is not None:
        layout, _ = fastest_layout(times, wanted or FP32)
        return FastPath(precision, layout, f"CPU {capability}, precision given")
    fp32_layout, fp32_time = fastest_layout(times, FP32)
    if not native:
        return FastPath(FP32, fp32_layout, f"CPU {capability} without native bf16")
    if refusal is not None:
        return FastPath(FP32, fp32_layout, f"CPU {capability}: {refusal}")
    bf16_layout, bf16_time = fastest_layout(times, BF16)
    speedup = fp32_time / bf16_time
    if speedup < MIN_SPEEDUP:
        return FastPath(FP32, fp32_layout, f"CPU {capability}: bf16 measured {speedup:.2f}x fp32, below {MIN_SPEEDUP}x")
    return FastPath(BF16, bf16_layout, f"CPU {capability} with native bf16, measured {speedup:.1f}x fp32")


def remember_choice(choice: FastPath) -> None:
    """Hand the choice to the processes Lightning launches for DDP (they inherit the environment)."""
    tf32 = "n/a" if choice.tf32 is None else "on" if choice.tf32 else "off"
    os.environ[CHOICE_VARIABLE] = f"{choice.precision}|{choice.memory_format}|{tf32}|{choice.reason}"
