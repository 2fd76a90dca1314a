"""What every genlab model shares: resumable randomness, an iteration counter, and the sampling interface.

Callbacks talk to generative models only through `GenerativeModule`'s small interface:
`latent_dim`, `num_classes` (0 when unconditional), `sample_latent(n, generator)`, `decode(z, labels)` and
`sample(n, labels)`, which returns samples in the data's range (images in [-1, 1], NCHW; N x 2 for 2-D toy
data). A sample grid, a latent interpolation or an FID therefore works for every model alike.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from genlab.runtime import iterations_done, logging_this_step, rewind_batch_progress
from genlab.errors import GenlabError
from genlab.rng import collect_rng_states, restore_rng_states

_RNG_KEY = "genlab_rng_states"
_ITERATIONS_KEY = "genlab_iterations"  # training batches behind the weights, for `genlab test` records
_SKIPPED_KEY = "genlab_skipped_updates"
_PRECISIONS_KEY = "genlab_training_precisions"  # what the weights were trained in, for `genlab test` records
DIVERGENCE_POLICIES = ("stop", "skip")


def divergence_policy(value: str) -> Literal["stop", "skip"]:
    """A model's `on_divergence` argument, checked (the CLI checks it too; Python callers get this line)."""
    if value not in DIVERGENCE_POLICIES:
        raise GenlabError(f"model.on_divergence must be 'stop' or 'skip', got {value!r}")
    return value  # type: ignore[return-value]


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the duration, then the previous mode back.

    A model whose `batch_statistics_layers()` names BatchNorm layers (a GAN sampling as the reference notebooks
    do, with its generator in training mode) gets those layers normalising with the statistics of the batch
    being drawn, without touching their running statistics.
    """
    was_training = module.training
    module.eval()
    batch_layers = list(getattr(module, "batch_statistics_layers", lambda: [])())
    for layer in batch_layers:
        layer.training, layer.track_running_stats = True, False  # batch statistics, running ones left alone
    try:
        with torch.no_grad():
            yield
    finally:
        for layer in batch_layers:
            layer.track_running_stats = True
        module.train(was_training)


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def optimized_parameters(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """The parameters an optimizer updates: a list at hand, not a walk over the module tree every update."""
    return [parameter for group in optimizer.param_groups for parameter in group["params"]]


def update_norms(parameters: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(norm of the gradients, norm of the weights) of `parameters`, in one fused pass and without a host sync:
    what the divergence guard checks and the GAN logs, on every update."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    norms = torch._foreach_norm([*gradients, *parameters])  # what torch.nn.utils.get_total_norm runs per device
    if len({norm.device for norm in norms}) > 1:  # a model spread over devices: gather the norms on one
        norms = [norm.to(parameters[0].device) for norm in norms]
    grad_norm = torch.linalg.vector_norm(torch.stack(norms[:len(gradients)])) if gradients else torch.zeros(())
    return grad_norm, torch.linalg.vector_norm(torch.stack(norms[len(gradients):]))


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
        self._buffer_list = None  # found again for this stage (modules may have been replaced since)
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
        checkpoint[_SKIPPED_KEY] = self.skipped_updates
        checkpoint[_ITERATIONS_KEY] = self.iteration
        current = str(self.trainer.precision) if self._trainer is not None else "32-true"
        self.training_precisions = self.precisions_trained_in(current)
        checkpoint[_PRECISIONS_KEY] = self.training_precisions
        if self._saving_mid_batch:
            rewind_batch_progress(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if problems := _shape_mismatches(checkpoint.get("state_dict", {}), self.state_dict()):
            raise GenlabError(
                f"the checkpoint does not fit this model ({'; '.join(problems[:2])}): load it with the config it"
                " was trained with (config.yaml in its run folder) or fix the network settings"
            )
        self.skipped_updates = int(checkpoint.get(_SKIPPED_KEY, 0))
        self.trained_iterations = int(checkpoint.get(_ITERATIONS_KEY, 0))
        self.training_precisions = list(checkpoint.get(_PRECISIONS_KEY, []))
        per_rank = checkpoint.get(_RNG_KEY, {}).get("per_rank")
        if per_rank:
            rank, _ = _distributed()
            restore_rng_states(per_rank[rank] if rank < len(per_rank) else per_rank[0])

    #: what a non-finite loss, gradient or weight does: "stop" saves the last good state and ends the run with
    #: one line naming the iteration and the side; "skip" leaves that update out and counts it.
    on_divergence: Literal["stop", "skip"] = "stop"
    skipped_updates: int = 0
    #: the precisions the weights were trained in, in order (a resume may change it), for score records
    training_precisions: list[str] = []

    def precisions_trained_in(self, current: str) -> list[str]:
        """`training_precisions` with the precision of the training now running appended if it differs."""
        if self.training_precisions[-1:] == [current]:
            return self.training_precisions
        return [*self.training_precisions, current]
    _good_buffers: list[Tensor] | None = None
    _buffer_list: list[Tensor] | None = None
    _update_loss: Tensor | None = None
    _saving_mid_batch: bool = False

    def remember_buffers(self) -> None:
        """Copy the buffers (BatchNorm running statistics) before a forward pass changes them in place.

        A non-finite forward pass spoils them before any check can run; `step_is_finite` puts the copies back,
        so a skipped update leaves no trace and a diagnostic checkpoint holds the last good statistics.
        Models without buffers pay nothing: the list of buffers is found once per stage, not per update.
        """
        if self._buffer_list is None:
            self._buffer_list = list(self.buffers())
        self._good_buffers = [buffer.detach().clone() for buffer in self._buffer_list] if self._buffer_list else None

    def _restore_buffers(self) -> None:
        if self._good_buffers is not None:
            with torch.no_grad():
                for buffer, good in zip(self.buffers(), self._good_buffers):
                    buffer.copy_(good)

    def _grad_scaler_active(self) -> bool:
        """float16 mixed precision: overflowing gradients are routine and the GradScaler skips those steps."""
        plugin = getattr(self._trainer, "precision_plugin", None) if self._trainer is not None else None
        return getattr(plugin, "scaler", None) is not None

    def step_is_finite(self, side: str, loss: Tensor | None, parameters: Iterable[Tensor],
                       norms: tuple[Tensor, Tensor] | None = None) -> bool:
        """Whether an update of `parameters` may go ahead: loss, gradient norm and weight norm all finite.

        Call it after backward and before `optimizer.step()`, so the weights are still the last good ones when
        it stops the run. Costs one fused norm pass (pass `norms` from `update_norms` when they are logged
        anyway) and one host synchronisation (under DDP, one all-reduce) per update; under float16 mixed
        precision gradients are left to the GradScaler. Non-finite weights stop the run even in skip mode:
        skipping updates cannot repair them.
        """
        grad_norm, weight_norm = norms if norms is not None else update_norms(list(parameters))
        values = {"loss": loss.detach()} if loss is not None else {}
        if not self._grad_scaler_active():
            values["gradients"] = grad_norm
        values["weights"] = weight_norm
        finite = bool(torch.isfinite(torch.stack([value.float().to(weight_norm.device) for value in values.values()]))
                      .all())
        if self._trainer is not None and self.trainer.world_size > 1:
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        if finite:
            return True
        flags = [bool(torch.isfinite(value).all()) for value in values.values()]
        self._restore_buffers()
        broken = [name for name, ok in zip(values, flags) if not ok]
        if self.on_divergence == "skip" and "weights" not in broken:
            self.skipped_updates += 1
            if self.skipped_updates & (self.skipped_updates - 1) == 0:  # 1, 2, 4, 8, …: a trace, not a flood
                rank_zero_warn(f"iteration {self.iteration}: non-finite {side} update skipped"
                               f" ({self.skipped_updates} so far)")
            return False
        raise GenlabError(self._save_diverged_state(side, broken))

    def _save_diverged_state(self, side: str, broken: list[str]) -> str:
        """Save the current state beside the run's checkpoints; return the one-line message for the user."""
        folder = Path(getattr(self.trainer.checkpoint_callback, "dirpath", None) or self.trainer.default_root_dir)
        path = folder / f"diverged-iteration_{self.iteration:07d}.ckpt"
        self._saving_mid_batch = True
        try:
            self.trainer.save_checkpoint(path, weights_only=False)  # every process takes part; rank 0 writes
        finally:
            self._saving_mid_batch = False
        start = f"training diverged at iteration {self.iteration}: the {side}"
        if "weights" in broken:  # an earlier update overflowed although its loss and gradients were finite
            return (f"{start} weights are NaN or infinite (the state is saved for inspection in {path});"
                    " lower the learning rate")
        if not broken:  # under DDP: finite here, not on another process
            what = "update is NaN or infinite on another process"
        else:
            what = " and ".join(broken) + (" is" if broken == ["loss"] else " are") + " NaN or infinite"
        return (f"{start} {what}; the last good state is saved in {path}; lower the learning rate, or set"
                " model.init_args.on_divergence: skip")

    def check_automatic_update(self, optimizer: torch.optim.Optimizer) -> None:
        """The divergence guard for automatic optimization; call it from `on_before_optimizer_step`.

        Checks the loss the training step kept in `_update_loss` with the gradients and weights. A skipped
        update sets every gradient to None, which torch optimizers step over (zeros would still move Adam's
        weights through its momentum). Returning None from `training_step` instead is refused under DDP.
        """
        parameters = optimized_parameters(optimizer)
        if not self.step_is_finite("model", self._update_loss, parameters):
            for parameter in parameters:
                parameter.grad = None
        if self.on_divergence == "skip":
            self.log("divergence/skipped_updates", float(self.skipped_updates), on_step=True, on_epoch=False)

    def build_optimizer(self, factory: Any, parameters: Any, key: str) -> torch.optim.Optimizer:
        """Instantiate a YAML-chosen optimizer, turning bad settings (a negative lr, …) into one line."""
        try:
            return factory(parameters)
        except (ValueError, TypeError) as error:
            raise GenlabError(f"{key}: {error}: fix the optimizer's init_args in the config") from None

    def logging_this_step(self) -> bool:
        """Whether Lightning writes step logs this step (every `log_every_n_steps`): values logged at other
        steps are computed and then dropped, which costs real time when a step takes a millisecond."""
        return self._trainer is None or logging_this_step(self._trainer)

    #: training iterations behind the loaded weights (set when a checkpoint is loaded, e.g. by `genlab test`)
    trained_iterations: int = 0

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

    #: other ways this model can draw samples from the same weights (e.g. the VAE's "mixture" prior), which
    #: `GenerativeMetrics(samplers=[...])` scores beside the configured one under their own names; the
    #: constructor setting that chooses among them is named by `sampler_setting`
    sampler_variants: tuple[str, ...] = ()
    sampler_setting: str = ""
    #: whether `genlab.precision` may choose bf16-mixed for this model where it is faster: only where bf16 runs
    #: were measured to score within the fp32 runs' seed-to-seed spread
    automatic_bf16: bool = True

    def sampler_settings(self) -> dict[str, Any]:
        """What decides the samples besides the weights and the seed (prior, BatchNorm mode, …), for records."""
        return {"latent_dim": self.latent_dim}

    def check_sampler(self, variant: str) -> None:
        """One line when `variant` is not one of this model's samplers."""
        if variant not in self.sampler_variants:
            raise GenlabError(f"{type(self).__name__} has no sampler {variant!r}; it has"
                              f" {list(self.sampler_variants) or 'only its configured one'}")

    @contextmanager
    def sampler(self, variant: str | None = None) -> Iterator[None]:
        """Sample with `variant` (one of `sampler_variants`) for the duration; None keeps the configured sampler."""
        if variant is None:
            yield
            return
        self.check_sampler(variant)
        configured = getattr(self, self.sampler_setting)
        setattr(self, self.sampler_setting, variant)
        try:
            yield
        finally:
            setattr(self, self.sampler_setting, configured)

    def default_labels(self, n: int) -> Tensor | None:
        """Balanced labels 0, 1, …, C-1, 0, 1, … for conditional models; None otherwise."""
        if self.num_classes == 0:
            return None
        return torch.arange(n, device=self.device) % self.num_classes

    def timing_pass(self, n: int) -> Tensor:
        """A forward pass through every network one training iteration uses, on random inputs: what
        `genlab.precision` times (with its backward) in fp32 and in bf16 to choose the automatic precision."""
        return self.decode(torch.randn(n, self.latent_dim, device=self.device), self.default_labels(n))

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n samples in eval mode without gradients; labels default to balanced classes when conditional."""
        if labels is None:
            labels = self.default_labels(n)
        with evaluation_mode(self):
            return self.decode(self.sample_latent(n, generator), labels)

    #: seed of the samples `genlab predict` draws: test item i gets the latent drawn with seed + i, so any
    #: process count (DDP shards the items) and any batch size give the same image for the same item
    predict_seed: int = 0

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Nothing per batch: `genlab test` scores a generator through `GenerativeMetrics` at the epoch's end."""

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor | None]:
        """One generated image per test-split item (batch: samples, labels, item indices), with that item's label
        when the model is conditional."""
        if len(batch) < 3:
            raise GenlabError("genlab predict needs the item indices a genlab data module's predict_dataloader"
                              " yields (samples, labels, indices): use a genlab.data module")
        labels = batch[1].to(self.device) if self.num_classes else None
        items = batch[2]
        with evaluation_mode(self):
            latents = torch.cat([
                self.sample_latent(1, torch.Generator(device=self.device).manual_seed(self.predict_seed + int(item)))
                for item in items
            ])
            images = self.decode(latents, labels)
        return {"images": images, "labels": labels, "items": items}
