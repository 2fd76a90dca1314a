"""No host synchronisation in an ordinary training iteration (one that neither logs, checkpoints nor evaluates).

On a GPU every read of a tensor's value on the host (`aten._local_scalar_dense`: `.item()`, `bool(t)`, `float(t)`)
makes the host wait for the device. The count is taken on the CPU, where the same dispatch happens
(`genlab.host_syncs`), for every experiment YAML and for the GAN settings the YAMLs do not cover (every loss,
n_critic, gradient penalty, clipping with a fused optimizer, EMA, skip policy). Torch optimizers' reads of their
own step counter are left out: on a GPU that counter stays on the host.
"""

from __future__ import annotations

import pytest
import torch

from genlab.cli import GenlabCLI
from genlab.host_syncs import HostSyncCounter, SyncsPerIteration
from tests.helpers import EXPERIMENTS, tiny_data_arguments

CONFIGS = sorted(EXPERIMENTS.glob("*.yaml"))
ITERATIONS = 4  # the tiny EmojiOne set has 40 images: 32 after validation, 4 batches of 8


def syncs_per_iteration(config: str, data_root, *overrides: str) -> dict[int, list[str]]:
    """Fit `config` for ITERATIONS iterations on tiny data, never logging, checkpointing or validating before the
    end; returns the syncs (where each came from) of every iteration but the last."""
    args = ["--config", str(EXPERIMENTS / f"{config}.yaml"), "--data.batch_size=8", "--trainer.max_epochs=1",
            f"--trainer.limit_train_batches={ITERATIONS}", "--trainer.log_every_n_steps=1000",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.limit_val_batches=0", "--evaluate=false", "--checkpoint.every_n_iterations=1000",
            "--trainer.logger=false", *overrides]
    args += tiny_data_arguments(EXPERIMENTS / f"{config}.yaml", data_root, val_size=8)
    counter = SyncsPerIteration()
    cli = GenlabCLI(args=args, run=False)
    cli.trainer.callbacks.insert(0, counter)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert sorted(counter.where) == list(range(1, ITERATIONS + 1))
    return {iteration: where for iteration, where in counter.where.items() if iteration < ITERATIONS}


def assert_no_syncs(syncs: dict[int, list[str]]) -> None:
    found = {iteration: where for iteration, where in syncs.items() if where}
    assert not found, f"host synchronisations in ordinary iterations: {found}"


@pytest.mark.parametrize("config", [p.stem for p in CONFIGS])
def test_an_ordinary_iteration_of_every_experiment_never_waits_for_the_device(config, tiny_data, tmp_path,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_no_syncs(syncs_per_iteration(config, tiny_data))


GAN_SETTINGS = {
    "minimax": ["--model.init_args.loss=minimax"],
    "hinge_n_critic_2": ["--model.init_args.loss=hinge", "--model.init_args.n_critic=2"],
    "wasserstein_clipping_adam": ["--model.init_args.loss=wasserstein", "--model.init_args.clip_weights=0.01"],
    "gradient_penalty": ["--model.init_args.loss=wasserstein", "--model.init_args.gradient_penalty=10"],
    "ema_after_warmup": ["--model.init_args.ema_decay=0.9", "--model.init_args.ema_warmup_iterations=2"],
    "skip_policy": ["--model.init_args.on_divergence=skip"],
    "diffaugment": ["--model.init_args.augment=color,translation,cutout"],
}


@pytest.mark.parametrize("setting", GAN_SETTINGS)
def test_an_ordinary_gan_iteration_never_waits_for_the_device_whatever_the_setting(setting, tiny_data, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["--model.init_args.generator.init_args.hidden=[16]", "--model.init_args.discriminator.init_args.hidden=[8]"]
    assert_no_syncs(syncs_per_iteration("gan_mnist", tiny_data, *tiny, *GAN_SETTINGS[setting]))


def test_the_counter_sees_every_kind_of_host_read_and_leaves_optimizer_step_counters_out():
    value = torch.tensor([1.5, 2.0])
    with HostSyncCounter() as counter:
        value.sum().item()
        bool(value.all())
        float(value[0])
        if value[1] > 1:
            pass
        parameter = torch.nn.Parameter(torch.ones(2))
        parameter.grad = torch.ones(2)
        torch.optim.Adam([parameter]).step()  # the loop implementation reads its step count with .item()
    assert counter.count == 4
    assert all(__file__ in where for where in counter.where), counter.where


def test_a_logging_iteration_is_where_the_guard_reads_its_checks(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    counter = SyncsPerIteration()
    args = ["--config", str(EXPERIMENTS / "gan_mnist.yaml"), "--data.batch_size=8", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=6", "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false",
            "--trainer.limit_val_batches=0", "--evaluate=false", f"--data.data_dir={tiny_data}", "--data.val_size=16",
            "--model.init_args.generator.init_args.hidden=[16]", "--model.init_args.discriminator.init_args.hidden=[8]"]
    cli = GenlabCLI(args=args, run=False)
    cli.trainer.callbacks.insert(0, counter)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    reads = [where for iteration in counter.where.values() for where in iteration if "divergence.py" in where]
    assert len(reads) >= 5  # every iteration logs, so every iteration settles the guard (one read each)
