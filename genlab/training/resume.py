"""What a checkpoint carries besides Lightning's own state, so that a resumed run continues exactly as if it had
never stopped: every process's random number generator states, the iterations and the precisions behind the
weights, the updates the divergence guard skipped. Lightning restores weights, optimizers and loops, and
`TensorLoader.state_dict` the data order."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.errors import GenlabError
from genlab.rng import collect_rng_states, restore_rng_states
from genlab.run_layout import DIVERGED_KEY, FAST_PATHS_KEY, ITERATIONS_KEY, PRECISIONS_KEY, RNG_KEY, SKIPPED_KEY  # noqa: F401 (re-exported)


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def seed_this_process() -> None:
    """Under DDP each process draws its own noise: the base seed + its rank."""
    rank, world_size = rank_and_world_size()
    if world_size > 1:
        seed = int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed())) + rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)


def save_rng_states(checkpoint: dict[str, Any]) -> None:
    """Every process's generator states (a collective call under DDP: every process must take part)."""
    states = collect_rng_states()
    _rank, world_size = rank_and_world_size()
    gathered: list[Any] = [states]
    if world_size > 1:
        gathered = [None] * world_size
        torch.distributed.all_gather_object(gathered, states)
    checkpoint[RNG_KEY] = {"per_rank": gathered}


def restore_this_process_rng(checkpoint: dict[str, Any]) -> None:
    """This process's saved generator states (rank 0's when the run had fewer processes)."""
    per_rank = checkpoint.get(RNG_KEY, {}).get("per_rank")
    if per_rank:
        rank, _ = rank_and_world_size()
        restore_rng_states(per_rank[rank] if rank < len(per_rank) else per_rank[0])


def check_weights_fit(saved: dict[str, Tensor], current: dict[str, Tensor]) -> None:
    """One line when a checkpoint's weights do not fit the model (another network or other settings)."""
    problems = [
        f"{key} is {tuple(value.shape)} in the checkpoint but {tuple(current[key].shape)} in the model"
        for key, value in saved.items()
        if key in current and hasattr(value, "shape") and tuple(value.shape) != tuple(current[key].shape)
    ]
    for names, where in ((sorted(set(current) - set(saved)), "the checkpoint lacks"),
                         (sorted(set(saved) - set(current)), "the model has no")):
        if names:
            problems.append(f"{where} {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else ""))
    if problems:
        raise GenlabError(
            f"the checkpoint does not fit this model ({'; '.join(problems[:2])}): load it with the config it"
            " was trained with (config.yaml in its run folder) or fix the network settings"
        )
