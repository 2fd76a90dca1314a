"""A resumed run trains with the optimizer settings of its configuration, not those saved in its checkpoint.

Loading an optimizer's state (`Optimizer.load_state_dict`) also restores its hyperparameters — learning rate,
betas, weight decay, … — so `--ckpt_path last --model.init_args.generator_optimizer.init_args.lr=0.5` would
train on with the checkpoint's rate without a word. genlab keeps the moments and step counts from the checkpoint
and puts back every hyperparameter the configuration gives, saying which ones differed. (genlab configures no
learning-rate schedules, so a rate in a checkpoint differs from the configured one only when the configuration
changed.)
"""

from __future__ import annotations

from typing import Any

import torch

Settings = list[dict[str, Any]]  # per parameter group: hyperparameter → value


def plain(value: Any) -> Any:
    """A hyperparameter as a comparable plain value (tensors to floats, lists to tuples)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return tuple(plain(item) for item in value)
    return value


def configured_settings(optimizer: torch.optim.Optimizer) -> Settings:
    """Every hyperparameter of every parameter group, as configured (read before any checkpoint is loaded)."""
    return [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]


def reapply(optimizer: torch.optim.Optimizer, configured: Settings, name: str) -> list[str]:
    """Put the configured hyperparameters back over those a checkpoint restored; one line per one that differed."""
    changed = []
    for index, (group, settings) in enumerate(zip(optimizer.param_groups, configured)):
        for key, value in settings.items():
            if key in group and plain(group[key]) != plain(value):
                where = f"{name} (group {index})" if len(configured) > 1 else name
                changed.append(f"genlab: resumed with {where} {key} = {plain(value)} as configured; the checkpoint had"
                               f" {plain(group[key])}")
                if isinstance(group[key], torch.Tensor) and isinstance(value, torch.Tensor):
                    group[key].copy_(value)
                else:
                    group[key] = value
    return changed
