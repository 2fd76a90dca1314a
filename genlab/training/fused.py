"""Fused optimizers where the user left the implementation unset.

torch's Adam, AdamW, SGD and Adagrad have a fused kernel (one kernel for every parameter, CPU and CUDA) besides
the per-tensor loop and the `foreach` variant; torch picks the loop on a CPU and `foreach` on a GPU unless told.
genlab asks for the fused kernel when the configuration sets neither `fused` nor `foreach`, for two reasons:

- speed: one kernel per step instead of several per parameter (`python benchmarks/optimizer_step.py`, Adam, six
  parameter tensors, one thread of an AVX-512 CPU, two runs: 16x16 161-163 -> 51-52 µs, 256x784 1,969-2,044 ->
  621-734 µs, 1024x1024 13,021-16,444 -> 3,598-3,694 µs per step, 2.8x-4.5x);
- a step that can be skipped on the device: a fused step takes a `found_inf` flag (as torch's GradScaler gives it)
  and leaves weights, moments and step count untouched when it is set, so the divergence guard never has to read
  a value on the host to skip a non-finite update (`genlab.training.divergence`).

The choice is visible: the optimizer's `param_groups` (saved in every checkpoint) say `fused: True`. A setting the
user made (`fused: false`, `foreach: true`, `differentiable: true`) is kept as it is.
"""

from __future__ import annotations

import inspect

import torch

from genlab.runtime import fused_kernel_devices

FUSABLE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad)


def fused_when_unset(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """`optimizer` rebuilt with `fused=True` when it is one of torch's fusable optimizers (exactly, not a
    subclass), nothing chose its implementation, it has not stepped yet and every parameter is a floating-point
    tensor on a device with fused kernels; otherwise `optimizer` itself."""
    defaults = optimizer.defaults
    if type(optimizer) not in FUSABLE or optimizer.state:
        return optimizer
    if defaults.get("fused") is not None or defaults.get("foreach") is not None or defaults.get("differentiable"):
        return optimizer
    parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    devices = fused_kernel_devices()
    if not all(p.is_floating_point() and p.device.type in devices for p in parameters):
        return optimizer
    accepted = inspect.signature(type(optimizer)).parameters  # defaults may hold more (AdamW's decoupled_weight_decay)
    settings = {key: value for key, value in defaults.items() if key in accepted}
    groups = [{**group, "fused": True} for group in optimizer.param_groups]
    return type(optimizer)(groups, **{**settings, "fused": True})


def steps_on_device_flag(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer.step()` honours a `found_inf` attribute (skips the whole step when it is 1): torch's
    fused implementations. Read from the groups, which a loaded checkpoint may have changed."""
    return type(optimizer) in FUSABLE and all(group.get("fused") for group in optimizer.param_groups)
