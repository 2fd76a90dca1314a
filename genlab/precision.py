"""The automatic precision: bf16-mixed where this machine runs it natively and faster, fp32 everywhere else.

A `genlab fit` that names no `trainer.precision` gets the choice below; an explicit precision (YAML or command
line) always wins. `test`, `validate` and `predict` default to fp32, so a checkpoint scores the same on every
machine. The reason matters more than the few seconds it costs to find out: on a CPU without native bf16
(AVX2 only) bf16 matmuls are ~70x slower than fp32, on one with AVX-512-BF16/AMX they are ~2-4x faster, and a
user should not have to know which one they are on.

- CUDA: bf16-mixed where the GPU has native bf16 (Ampere and newer), else fp32.
- CPU: bf16-mixed only where oneDNN reports native bf16 *and* the model's own networks (`timing_pass`), forward and
  backward under autocast at the training batch size, is measured at least `MIN_SPEEDUP` times faster than in fp32
  (`bf16_speedup`, under a few seconds, measured once per machine kind, network and batch size and kept in
  `~/.cache/genlab`, so one command always makes the same choice on one machine); else fp32. Models without a generator (the classifiers) train in fp32.
- Anything else (MPS, XLA …): fp32.

The choice is printed at start and written into the run's `config.yaml` (as `trainer.precision`) and into every
score record, so a number always says what precision produced it. Processes that Lightning starts for DDP
inherit the first process's choice (through `CHOICE_VARIABLE`), so all ranks train in the same precision.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.rng import isolated_rng

#: bf16 on a CPU must pay clearly: a probe speedup of 1.5 was ~1.3x per whole training iteration on an
#: AVX-512-BF16 CPU (benchmarks/throughput.py), below it the gain is small and not worth a second numerics
MIN_SPEEDUP = 1.5
CHOICE_VARIABLE = "GENLAB_AUTO_PRECISION"  # "bf16-mixed|why" set by the first process, read by DDP children


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # a Lightning precision: "bf16-mixed" or "32-true"
    reason: str

    def describe(self) -> str:
        return f"genlab: precision {self.precision} (automatic: {self.reason}; --trainer.precision overrides it)"


def bf16_speedup(model: torch.nn.Module, batch_size: int, passes: int = 9) -> float:
    """fp32 time / bf16-autocast time of the model's own networks (its `timing_pass`), forward and backward, at
    the training batch size on the CPU: whether bf16 pays depends on the layer sizes (a 2-D toy GAN's tiny
    layers lose to the casts, a DCGAN's convolutions gain ~2x). Medians of `passes` alternating passes, so a
    busy neighbour on the machine moves both sides alike. A copy is timed, with the random-number streams put
    back afterwards, so the run itself is untouched."""
    times: dict[bool, list[float]] = {False: [], True: []}
    with isolated_rng():
        probe = copy.deepcopy(model).cpu().train()
        for index in range(2 * (passes + 1)):
            autocast = bool(index % 2)
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                output = probe.timing_pass(batch_size)
            output.float().square().mean().backward()
            probe.zero_grad(set_to_none=True)
            if index >= 2:  # the first pass of each side warms up
                times[autocast].append(time.perf_counter() - start)
    return statistics.median(times[False]) / statistics.median(times[True])


def choose_precision(accelerator: str | None, subcommand: str | None = "fit",
                     model: torch.nn.Module | None = None, batch_size: int = 64) -> PrecisionChoice:
    """The automatic precision for training `model` on `accelerator` (Lightning's name: "auto", "cpu", "gpu" …)."""
    if subcommand != "fit":
        return PrecisionChoice("32-true", f"genlab {subcommand} evaluates in fp32, the same on every machine")
    inherited = os.environ.get(CHOICE_VARIABLE)
    if inherited and "|" in inherited and int(os.environ.get("LOCAL_RANK", "0")) > 0:  # a DDP child process
        precision, reason = inherited.split("|", 1)
        return PrecisionChoice(precision, reason)
    accelerator = (accelerator or "auto").lower()
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return PrecisionChoice("bf16-mixed", f"{torch.cuda.get_device_name()} has native bf16")
        return PrecisionChoice("32-true", "the GPU has no native bf16")
    if accelerator not in ("cpu", "auto"):
        return PrecisionChoice("32-true", f"accelerator {accelerator}")
    capability = torch.backends.cpu.get_cpu_capability()
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return PrecisionChoice("32-true", f"CPU {capability} without native bf16")
    if model is None or not hasattr(model, "timing_pass"):
        return PrecisionChoice("32-true", f"CPU {capability}: bf16 is measured on generative models only")
    speedup = remembered_speedup(model, batch_size)
    if speedup < MIN_SPEEDUP:
        return PrecisionChoice("32-true", f"CPU {capability}: bf16 measured {speedup:.2f}x fp32, below {MIN_SPEEDUP}x")
    return PrecisionChoice("bf16-mixed", f"CPU {capability} with native bf16, measured {speedup:.1f}x fp32")


def cache_file() -> Path:
    """Where measured speedups are kept: $GENLAB_CACHE_DIR, else $XDG_CACHE_HOME/genlab, else ~/.cache/genlab."""
    folder = os.environ.get("GENLAB_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
                                                         "genlab")
    return Path(folder) / "bf16_speedups.json"


def remembered_speedup(model: torch.nn.Module, batch_size: int) -> float:
    """`bf16_speedup`, measured once per machine kind, torch version, network and batch size and then read back:
    a model near `MIN_SPEEDUP` would otherwise train in bf16 one day and in fp32 the next, from one command."""
    fingerprint = f"{torch.backends.cpu.get_cpu_capability()} {torch.__version__} {batch_size} {model!r}"
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    path = cache_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), float):
        return known[key]
    speedup = bf16_speedup(model, batch_size)
    try:  # a cache that cannot be written only means measuring again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps({**known, key: speedup}))
        partial.replace(path)
    except OSError:
        pass
    return speedup


def remember_choice(choice: PrecisionChoice) -> None:
    """Hand the choice to the processes Lightning launches for DDP (they inherit the environment)."""
    os.environ[CHOICE_VARIABLE] = f"{choice.precision}|{choice.reason}"
