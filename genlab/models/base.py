"""What every genlab model shares: resumable randomness, an iteration counter, and the sampling interface.

Callbacks talk to generative models only through `GenerativeModule`'s small interface:
`latent_dim`, `num_classes` (0 when unconditional), `sample_latent(n, generator)`, `decode(z, labels)` and
`sample(n, labels)`, which returns samples in the data's range (images in [-1, 1], NCHW; N x 2 for 2-D toy
data). A sample grid, a latent interpolation or an FID therefore works for every model alike.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from genlab.errors import GenlabError

_RNG_KEY = "genlab_rng_states"


def collect_rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python RNG states, as tensors and ints only.

    Lightning loads checkpoints with `torch.load(weights_only=True)`, which refuses NumPy arrays, so the
    NumPy state travels as a tensor.
    """
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the duration, then the previous mode back."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def iterations_done(trainer: L.Trainer) -> int:
    """Training batches processed so far, across epochs and resumes.

    Under manual optimization `trainer.global_step` counts optimizer steps (a D and a G step make 2), so
    schedules such as "every 200 iterations" count batches instead.
    """
    return trainer.fit_loop.epoch_loop.batch_progress.total.ready


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _shape_mismatches(saved: dict[str, Tensor], current: dict[str, Tensor]) -> list[str]:
    problems = [
        f"{key} is {tuple(value.shape)} in the checkpoint but {tuple(current[key].shape)} in the model"
        for key, value in saved.items()
        if key in current and hasattr(value, "shape") and tuple(value.shape) != tuple(current[key].shape)
    ]
    missing = sorted(set(current) - set(saved))
    unexpected = sorted(set(saved) - set(current))
    if missing:
        problems.append(f"the checkpoint lacks {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if unexpected:
        problems.append(f"the model has no {unexpected[0]}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
    return problems


class GenlabModule(L.LightningModule):
    """A LightningModule whose checkpoints also carry every process's random number generator states.

    Lightning restores weights, optimizers, loops and (through `TensorLoader.state_dict`) the data order;
    with the RNG states too, a run resumed from a checkpoint continues exactly as if it had never stopped.
    Under DDP each process gets its own seed (the base seed + its rank), so processes draw different noise.
    """

    def setup(self, stage: str) -> None:
        rank, world_size = _distributed()
        if stage == "fit" and world_size > 1:
            base_seed = int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed()))
            _seed_all(base_seed + rank)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = collect_rng_states()
        rank, world_size = _distributed()
        if world_size > 1:
            gathered: list[Any] = [None] * world_size
            torch.distributed.all_gather_object(gathered, states)
            checkpoint[_RNG_KEY] = {"per_rank": gathered}
        else:
            checkpoint[_RNG_KEY] = {"per_rank": [states]}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if problems := _shape_mismatches(checkpoint.get("state_dict", {}), self.state_dict()):
            raise GenlabError(
                f"the checkpoint does not fit this model ({'; '.join(problems[:2])}): load it with the config it"
                " was trained with (config.yaml in its run folder) or fix the network settings"
            )
        per_rank = checkpoint.get(_RNG_KEY, {}).get("per_rank")
        if per_rank:
            rank, _ = _distributed()
            restore_rng_states(per_rank[rank] if rank < len(per_rank) else per_rank[0])

    #: what a non-finite loss or gradient does: "stop" saves the last good state and ends the run with one
    #: line naming the iteration and the side; "skip" leaves that update out and counts it.
    on_divergence: Literal["stop", "skip"] = "stop"
    skipped_updates: int = 0

    def step_is_finite(self, side: str, *values: Tensor) -> bool:
        """Whether an update may go ahead: all `values` (a loss, a gradient norm) finite on every process.

        Costs one host synchronisation per update. Call it after backward and before `optimizer.step()`, so the
        weights are still the last good ones when it stops the run.
        """
        finite = bool(torch.stack([torch.isfinite(value.detach()).all() for value in values]).all())
        if self._trainer is not None and self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return True
        if self.on_divergence == "skip":
            self.skipped_updates += 1
            rank_zero_warn(f"iteration {self.iteration}: non-finite {side} update skipped ({self.skipped_updates} so far)")
            return False
        folder = Path(getattr(self.trainer.checkpoint_callback, "dirpath", None) or self.trainer.default_root_dir)
        path = folder / f"diverged-iteration_{self.iteration:07d}.ckpt"
        self.trainer.save_checkpoint(path)
        raise GenlabError(
            f"training diverged at iteration {self.iteration}: the {side} loss or gradients are NaN or infinite;"
            f" the last good state is saved in {path}; lower the learning rate, or set"
            " model.init_args.on_divergence: skip"
        )

    def build_optimizer(self, factory: Any, parameters: Any, key: str) -> torch.optim.Optimizer:
        """Instantiate a YAML-chosen optimizer, turning bad settings (a negative lr, …) into one line."""
        try:
            return factory(parameters)
        except (ValueError, TypeError) as error:
            raise GenlabError(f"{key}: {error}: fix the optimizer's init_args in the config") from None

    @property
    def iteration(self) -> int:
        """Batches trained on so far (0 outside a fit)."""
        trainer = self._trainer
        return iterations_done(trainer) if trainer is not None else 0

    def check_data_shape(self, expected: tuple[int, ...], where: str) -> None:
        """Stop before training when the data module's sample shape disagrees with the networks'."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        data_shape = getattr(datamodule, "data_shape", None)
        if data_shape is not None and tuple(data_shape) != tuple(expected):
            raise GenlabError(
                f"the data ({type(datamodule).__name__}) gives samples of shape {tuple(data_shape)} but {where} is"
                f" {tuple(expected)}: make the model's shape settings match the data"
            )


class GenerativeModule(GenlabModule):
    """A model that can draw samples; see the module docstring for the interface callbacks rely on."""

    latent_dim: int
    num_classes: int = 0

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n latent vectors from the prior, on this module's device."""
        raise NotImplementedError

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Samples for given latent vectors (and labels, for conditional models)."""
        raise NotImplementedError

    def default_labels(self, n: int) -> Tensor | None:
        """Balanced labels 0, 1, …, C-1, 0, 1, … for conditional models; None otherwise."""
        if self.num_classes == 0:
            return None
        return torch.arange(n, device=self.device) % self.num_classes

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n samples in eval mode without gradients; labels default to balanced classes when conditional."""
        if labels is None:
            labels = self.default_labels(n)
        with evaluation_mode(self):
            return self.decode(self.sample_latent(n, generator), labels)
