"""The divergence guard: a NaN or infinite loss, gradient or weight stops a run with one line and a checkpoint of
the last good state, or (on_divergence: skip) leaves the update out and counts it.

Faults are injected exactly: a batch of NaN images at a chosen iteration (the discriminator's or the model's
loss turns NaN), a generator loss patched to NaN, a weight set to NaN. "Before the bad step" is captured by a
callback at the start of that iteration, so the diverged checkpoint is compared with the true last good state.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from genlab.data.corruption import PatchNoise
from genlab.errors import GenlabError
from genlab.models import GAN, VAE, DenoisingAutoencoder
from genlab.nets import MLPAutoencoder, MLPDecoder, MLPEncoder
from genlab.training.checkpoints import RunCheckpoint
from tests.helpers import GUARD_BATCH as BATCH
from tests.helpers import SHAPE, TINY_GAN, error_line, load_checkpoint
from tests.helpers import guard_batches as images
from tests.helpers import guarded_tiny_gan as tiny_gan


def tiny_vae(on_divergence: str = "stop") -> VAE:
    torch.manual_seed(0)
    return VAE(MLPEncoder(in_shape=SHAPE, hidden=[8], latent_dim=2),
               MLPDecoder(latent_dim=2, hidden=[8], out_shape=SHAPE), on_divergence=on_divergence)  # type: ignore[arg-type]


def tiny_dae(on_divergence: str = "stop") -> DenoisingAutoencoder:
    torch.manual_seed(0)
    return DenoisingAutoencoder(MLPAutoencoder(in_shape=SHAPE, hidden=[8], code_dim=2), PatchNoise(patch_size=2),
                                on_divergence=on_divergence)  # type: ignore[arg-type]


class StateAt(L.Callback):
    """Keeps a copy of the model's state_dict at the start of a given (1-based) iteration."""

    def __init__(self, iteration: int) -> None:
        self.iteration, self.state = iteration, None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object,
                             batch_idx: int) -> None:
        if batch_idx + 1 == self.iteration:
            self.state = {key: value.clone() for key, value in pl_module.state_dict().items()}


class NaNGeneratorLoss:
    """The model's adversarial loss, but the generator's turns NaN at one iteration."""

    def __init__(self, loss: object, model: GAN, at: int) -> None:
        self.loss, self.model, self.at = loss, model, at

    def __getattr__(self, name: str) -> object:
        return getattr(self.loss, name)

    def generator(self, fake_scores: Tensor) -> Tensor:
        value = self.loss.generator(fake_scores)  # type: ignore[attr-defined]
        return value * float("nan") if self.model.iteration == self.at else value


def fit(model: L.LightningModule, data: TensorDataset, root: Path, *callbacks: L.Callback) -> L.Trainer:
    checkpoints = RunCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_iterations=2)
    trainer = L.Trainer(
        max_epochs=1, logger=False, callbacks=[checkpoints, *callbacks], enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=root, limit_val_batches=0, log_every_n_steps=1,
    )
    trainer.fit(model, DataLoader(data, batch_size=BATCH))
    return trainer


def assert_same_state(saved: dict[str, Tensor], expected: dict[str, Tensor], prefix: str = "") -> None:
    keys = [key for key in expected if key.startswith(prefix)]
    assert keys
    for key in keys:
        assert torch.equal(saved[key], expected[key]), key


def all_finite(state: dict[str, Tensor]) -> bool:
    return all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


def adam_steps(optimizer: torch.optim.Optimizer) -> set[int]:
    return {int(state["step"]) for state in optimizer.state.values()}


# --- stop ------------------------------------------------------------------------------------------------------

def test_nan_discriminator_loss_stops_with_the_last_good_state_and_keeps_last_ckpt(tmp_path):
    before = StateAt(5)
    kept: dict[str, bytes] = {}

    class KeepBytes(L.Callback):  # last.ckpt (iteration 4) and previous.ckpt (iteration 2) as they were
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx + 1 == 5:
                for name in ("last.ckpt", "previous.ckpt"):
                    kept[name] = (tmp_path / "checkpoints" / name).read_bytes()

    with pytest.raises(GenlabError) as error:
        fit(tiny_gan(), images(8, nan_at=(5,)), tmp_path, before, KeepBytes())
    diverged = tmp_path / "checkpoints" / "diverged-iteration_0000005.ckpt"
    assert str(error.value).startswith("training diverged at iteration 5: the discriminator loss and gradients are"
                                       " NaN or infinite; the last good state is saved in ")
    assert str(diverged) in str(error.value) and "\n" not in str(error.value)
    saved = load_checkpoint(diverged)["state_dict"]
    assert all_finite(saved)
    assert_same_state(saved, before.state)  # weights and the generator's BatchNorm statistics
    assert any("running_mean" in key for key in saved)
    for name, content in kept.items():
        assert (tmp_path / "checkpoints" / name).read_bytes() == content, name
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2 * 4  # D and G steps


def test_a_run_resumed_from_the_diverged_checkpoint_redoes_the_failed_iteration(tmp_path):
    with pytest.raises(GenlabError):
        fit(tiny_gan(), images(8, nan_at=(5,)), tmp_path)
    seen: list[tuple[int, int]] = []

    class Iterations(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((batch_idx, pl_module.iteration))

    model = tiny_gan()
    trainer = L.Trainer(max_epochs=1, logger=False, callbacks=[Iterations()], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    trainer.fit(model, DataLoader(images(8), batch_size=BATCH),
                ckpt_path=tmp_path / "checkpoints" / "diverged-iteration_0000005.ckpt")
    assert seen == [(4, 5), (5, 6), (6, 7), (7, 8)]  # batch 5 again, under its own number
    assert trainer.global_step == 2 * 8


def test_nan_generator_loss_names_the_generator(tmp_path):
    model = tiny_gan()
    before = StateAt(3)
    model.loss = NaNGeneratorLoss(model.loss, model, at=3)
    with pytest.raises(GenlabError, match=r"^training diverged at iteration 3: the generator loss and gradients"):
        fit(model, images(6), tmp_path, before)
    saved = load_checkpoint(tmp_path / "checkpoints" / "diverged-iteration_0000003.ckpt")["state_dict"]
    assert all_finite(saved)
    assert_same_state(saved, before.state, prefix="generator.net.0.")  # the generator was not stepped
    assert not torch.equal(saved["discriminator.net.0.weight"], before.state["discriminator.net.0.weight"])


def test_huge_learning_rate_is_caught(tmp_path):
    model = tiny_gan()
    model.discriminator_optimizer = lambda parameters: torch.optim.SGD(parameters, lr=1e30)
    with pytest.raises(GenlabError, match=r"^training diverged at iteration \d+: the (discriminator|generator) "):
        fit(model, images(6), tmp_path)
    (diverged,) = (tmp_path / "checkpoints").glob("diverged-iteration_*.ckpt")
    assert all_finite(load_checkpoint(diverged)["state_dict"])


def test_non_finite_weights_stop_even_in_skip_mode(tmp_path):
    class Poison(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx + 1 == 3:
                with torch.no_grad():
                    pl_module.discriminator.net[0].weight[0, 0] = float("inf")

    with pytest.raises(GenlabError, match=r"^training diverged at iteration 3: the discriminator weights are NaN"):
        fit(tiny_gan("skip"), images(6), tmp_path, Poison())


# --- skip ------------------------------------------------------------------------------------------------------

def test_skip_leaves_the_bad_updates_out_and_counts_them(tmp_path):
    model = tiny_gan("skip")
    before, after = StateAt(4), StateAt(5)
    with pytest.warns(UserWarning, match="iteration 4: non-finite discriminator update skipped"):
        trainer = fit(model, images(8, nan_at=(4, 6)), tmp_path, before, after)
    assert model.divergence.skipped_updates == 2
    assert trainer.callback_metrics["divergence/skipped_updates"].item() == 2
    d_optimizer, g_optimizer = trainer.optimizers
    assert adam_steps(d_optimizer) == {8 - 2} and adam_steps(g_optimizer) == {8}
    assert_same_state(after.state, before.state, prefix="discriminator.")  # iteration 4 left D alone
    state = model.state_dict()
    assert all_finite(state)
    assert not torch.equal(state["discriminator.net.0.weight"], after.state["discriminator.net.0.weight"])
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["genlab_skipped_updates"] == 2
    assert not list((tmp_path / "checkpoints").glob("diverged-*"))


# --- automatic optimization: VAE and DAE ------------------------------------------------------------------------

@pytest.mark.parametrize("make", [tiny_vae, tiny_dae], ids=["vae", "dae"])
def test_autoencoder_stop_names_the_model_and_saves_the_last_good_state(make, tmp_path):
    before = StateAt(3)
    with pytest.raises(GenlabError, match=r"^training diverged at iteration 3: the model loss and gradients are NaN"):
        fit(make(), images(6, nan_at=(3,)), tmp_path, before)
    saved = load_checkpoint(tmp_path / "checkpoints" / "diverged-iteration_0000003.ckpt")
    assert all_finite(saved["state_dict"])
    assert_same_state(saved["state_dict"], before.state)
    assert {int(state["step"]) for state in saved["optimizer_states"][0]["state"].values()} == {2}


def test_vae_skip_steps_over_the_bad_batches(tmp_path):
    model = tiny_vae("skip")
    before, after = StateAt(2), StateAt(3)
    trainer = fit(model, images(6, nan_at=(2, 5)), tmp_path, before, after)
    assert model.divergence.skipped_updates == 2
    assert trainer.callback_metrics["divergence/skipped_updates"].item() == 2
    assert adam_steps(trainer.optimizers[0]) == {6 - 2}  # gradients set to None: Adam's momentum stays still
    assert_same_state(after.state, before.state)
    assert all_finite(model.state_dict())


def test_an_unknown_policy_is_one_line():
    with pytest.raises(GenlabError, match="model.on_divergence must be 'stop' or 'skip', got 'ignore'"):
        tiny_vae("ignore")


# --- the CLI ---------------------------------------------------------------------------------------------------

def test_cli_divergence_is_one_line_naming_iteration_side_and_checkpoint(run_cli, tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # a learning rate no network survives
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1",
                "--model.init_args.discriminator_optimizer.init_args.lr=1e30")
    assert exit_info.value.code == 2
    line = error_line(capsys)
    match = re.match(r"genlab: error: training diverged at iteration (\d+): the (discriminator|generator) .* NaN or"
                     r" infinite; the last good state is saved in (\S+); lower the learning rate, or set"
                     r" model.init_args.on_divergence: skip$", line)
    assert match, line
    iteration, checkpoint = int(match[1]), tmp_path / match[3]
    run = tmp_path / "lightning_logs" / "gan_mnist" / "version_0"
    assert checkpoint == run / "checkpoints" / f"diverged-iteration_{iteration:07d}.ckpt"
    assert all_finite(load_checkpoint(checkpoint)["state_dict"])


# --- checks read at boundaries only --------------------------------------------------------------------------------

def fit_rarely_reading(model: L.LightningModule, data: TensorDataset, root: Path, *callbacks: L.Callback,
                       checkpoint_every: int = 4) -> L.Trainer:
    """A fit whose only boundaries are a checkpoint every `checkpoint_every` iterations and the end: the guard's
    checks of the iterations in between are read there, not when they happen."""
    checkpoints = RunCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_iterations=checkpoint_every)
    trainer = L.Trainer(
        max_epochs=1, logger=False, callbacks=[checkpoints, *callbacks], enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=root, limit_val_batches=0,
        log_every_n_steps=1000,
    )
    trainer.fit(model, DataLoader(data, batch_size=BATCH))
    return trainer


@pytest.mark.parametrize("make", [tiny_gan, tiny_vae], ids=["gan", "vae"])
def test_a_non_finite_update_read_later_names_its_own_iteration_and_saves_the_state_from_before_it(make, tmp_path):
    before = StateAt(2)
    with pytest.raises(GenlabError, match=r"^training diverged at iteration 2: the (discriminator|model) loss and"
                                          r" gradients are NaN or infinite; the last good state is saved in "):
        fit_rarely_reading(make(), images(8, nan_at=(2,)), tmp_path, before)
    saved = load_checkpoint(tmp_path / "checkpoints" / "diverged-iteration_0000002.ckpt")
    assert saved["genlab_diverged_at_iteration"] == 2
    assert_same_state(saved["state_dict"], before.state)  # iterations 2-4 changed nothing (BatchNorm included)
    assert {int(state["step"]) for state in saved["optimizer_states"][0]["state"].values()} == {1}
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # the checkpoint at iteration 4 was refused


def test_skipped_updates_read_at_the_end_are_counted_and_left_out(tmp_path):
    model = tiny_gan("skip")
    before, after = StateAt(2), StateAt(4)
    with pytest.warns(UserWarning, match="iteration 2: non-finite discriminator update skipped"):
        trainer = fit_rarely_reading(model, images(8, nan_at=(2, 3)), tmp_path, before, after, checkpoint_every=100)
    assert model.divergence.skipped_updates == 2
    d_optimizer, g_optimizer = trainer.optimizers
    assert adam_steps(d_optimizer) == {8 - 2} and adam_steps(g_optimizer) == {8}
    assert_same_state(after.state, before.state, prefix="discriminator.")  # iterations 2 and 3 left D alone
    assert all_finite(model.state_dict())
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["genlab_skipped_updates"] == 2


def test_optimizers_left_unset_are_fused_and_a_users_choice_is_kept():
    model = tiny_gan()
    model.generator_optimizer = lambda parameters: torch.optim.Adam(parameters, lr=1e-3, foreach=False)
    d_optimizer, g_optimizer = model.configure_optimizers()
    assert d_optimizer.defaults["fused"] is True and g_optimizer.defaults["fused"] is None
    assert g_optimizer.defaults["foreach"] is False


class OptimizerStateAt(L.Callback):
    """A copy of the first optimizer's state tensors at the start of a given (1-based) iteration."""

    def __init__(self, iteration: int) -> None:
        self.iteration, self.state = iteration, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx + 1 == self.iteration:
            optimizer = trainer.optimizers[0]
            self.state = [value.clone() for parameter in optimizer.param_groups[0]["params"]
                          for value in optimizer.state[parameter].values()]


OPTIMIZERS = {  # fused: skipped through found_inf; the others: undone by the guard's snapshot
    "adam_fused": lambda parameters: torch.optim.Adam(parameters, lr=1e-2),
    "rmsprop": lambda parameters: torch.optim.RMSprop(parameters, lr=1e-2, momentum=0.5),
    "adam_loop_by_choice": lambda parameters: torch.optim.Adam(parameters, lr=1e-2, foreach=False),
}


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS)
def test_a_skipped_update_leaves_weights_and_optimizer_state_exactly_as_they_were_whatever_the_optimizer(
        make_optimizer, tmp_path):
    model = tiny_gan("skip")
    model.discriminator_optimizer = make_optimizer
    before, after = StateAt(4), StateAt(5)
    state_before, state_after = OptimizerStateAt(4), OptimizerStateAt(5)
    with pytest.warns(UserWarning, match="iteration 4: non-finite discriminator update skipped"):
        fit_rarely_reading(model, images(8, nan_at=(4,)), tmp_path, before, after, state_before, state_after,
                           checkpoint_every=100)
    assert_same_state(after.state, before.state, prefix="discriminator.")
    assert len(state_after.state) == len(state_before.state) > 0
    for old, new in zip(state_before.state, state_after.state):
        assert torch.equal(old, new)
    assert all_finite(model.state_dict())


@pytest.mark.parametrize("make_optimizer", [
    lambda parameters: torch.optim.SGD(parameters, lr=1e-2, momentum=0.9),  # fused: creates its buffer uninitialised
    lambda parameters: torch.optim.AdamW(parameters, lr=1e-2),
], ids=["sgd_momentum", "adamw"])
def test_a_skipped_first_update_leaves_no_trace_in_a_fused_optimizer(make_optimizer, tmp_path):
    model = tiny_gan("skip")
    model.discriminator_optimizer = make_optimizer
    after_skip = OptimizerStateAt(2)
    with pytest.warns(UserWarning, match="iteration 1: non-finite discriminator update skipped"):
        trainer = fit_rarely_reading(model, images(4, nan_at=(1,)), tmp_path, after_skip, checkpoint_every=100)
    assert all(group["fused"] for group in trainer.optimizers[0].param_groups)
    # as if the step never ran: moments, momentum buffers and step counts all zero (not uninitialised memory)
    assert after_skip.state and all(torch.equal(value, torch.zeros_like(value)) for value in after_skip.state)
    assert all_finite(model.state_dict())
