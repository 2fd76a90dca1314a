"""The automatic precision: bf16-mixed only where this machine runs the model's networks clearly faster in bf16,
fp32 otherwise; an explicit precision always wins, and the choice is printed and kept with the run."""

import copy

import pytest
import torch
import yaml

from genlab import precision
from genlab.models import GAN, VAE
from genlab.nets import MLPDiscriminator, MLPGenerator
from genlab.nets.vae import MLPDecoder, MLPEncoder
from tests.conftest import EXPERIMENTS

TINY_GAN = [
    "--config", str(EXPERIMENTS / "gan_mnist.yaml"),
    "--model.init_args.generator.init_args.hidden=[32]",
    "--model.init_args.discriminator.init_args.hidden=[16]",
    "--data.init_args.batch_size=16", "--data.init_args.val_size=16",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--evaluate=false",
    "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
]


@pytest.fixture()
def native_bf16(monkeypatch):
    """A CPU whose oneDNN has native bf16, whatever this machine is."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)


@pytest.fixture()
def announced(monkeypatch) -> list[str]:
    """What the CLI reports through Lightning's rank-zero info log (beside its "Using bfloat16 AMP" line)."""
    lines: list[str] = []
    monkeypatch.setattr("genlab.cli.rank_zero_info", lines.append)
    return lines


def _measured(monkeypatch, speedup: float) -> list:
    calls = []
    monkeypatch.setattr(precision, "bf16_speedup", lambda model, batch_size: calls.append(batch_size) or speedup)
    return calls


def _saved_precision(tmp_path) -> str:
    config = yaml.safe_load((tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "config.yaml").read_text())
    return config["trainer"]["precision"]


def test_fit_picks_bf16_where_it_is_native_and_measured_faster_prints_it_and_saves_it(
        native_bf16, monkeypatch, run_cli, tiny_data, tmp_path, announced):
    calls = _measured(monkeypatch, 2.0)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}")
    assert calls == [16]  # timed once, at the training batch size
    assert announced[0].startswith("genlab: precision bf16-mixed (automatic: CPU")
    assert _saved_precision(tmp_path) == "bf16-mixed"


def test_fit_stays_fp32_where_bf16_is_measured_too_slow(native_bf16, monkeypatch, run_cli, tiny_data, tmp_path,
                                                         announced):
    _measured(monkeypatch, precision.MIN_SPEEDUP - 0.01)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}")
    assert announced[0].startswith("genlab: precision 32-true (automatic: CPU")
    assert _saved_precision(tmp_path) == "32-true"


def test_a_cpu_without_native_bf16_is_never_timed_and_trains_fp32(monkeypatch, run_cli, tiny_data, tmp_path):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    calls = _measured(monkeypatch, 100.0)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}")
    assert calls == [] and _saved_precision(tmp_path) == "32-true"


def test_an_explicit_precision_wins_and_nothing_is_timed(native_bf16, monkeypatch, run_cli, tiny_data, tmp_path,
                                                         announced):
    calls = _measured(monkeypatch, 100.0)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.precision=32-true")
    assert calls == [] and announced == []
    assert _saved_precision(tmp_path) == "32-true"


def test_test_evaluates_in_fp32_even_where_training_would_use_bf16(native_bf16, monkeypatch, run_cli, tiny_data,
                                                                    tmp_path, announced):
    _measured(monkeypatch, 100.0)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}")
    run_cli("test", *TINY_GAN, f"--data.data_dir={tiny_data}", "--ckpt_path=last")
    assert announced[-1].startswith("genlab: precision 32-true (automatic: genlab test evaluates in fp32")
    checkpoint = torch.load(tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt",
                            weights_only=True)
    assert checkpoint["genlab_training_precisions"] == ["bf16-mixed"]  # what score records quote


def test_a_measurement_is_made_once_per_network_and_batch_size_and_then_read_back(monkeypatch):
    calls = _measured(monkeypatch, 2.0)
    model = GAN(generator=MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))
    assert precision.remembered_speedup(model, 16) == 2.0
    _measured(monkeypatch, 1.0)  # a second measurement would now say otherwise: the first one stands
    assert precision.remembered_speedup(model, 16) == 2.0
    wider = GAN(generator=MLPGenerator(latent_dim=4, hidden=[9], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))
    assert precision.remembered_speedup(wider, 16) == 1.0 and precision.remembered_speedup(model, 32) == 1.0
    assert calls == [16]


def test_a_ddp_child_process_takes_the_first_process_choice(monkeypatch):
    monkeypatch.setenv(precision.CHOICE_VARIABLE, "bf16-mixed|chosen by rank 0")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert precision.choose_precision("cpu") == precision.PrecisionChoice("bf16-mixed", "chosen by rank 0")
    monkeypatch.setenv("LOCAL_RANK", "0")  # the first process measures for itself
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert precision.choose_precision("cpu").precision == "32-true"


@pytest.mark.parametrize("build", [
    lambda: GAN(generator=MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4], batch_norm=True),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8])),
    lambda: VAE(encoder=MLPEncoder(in_shape=[1, 4, 4], hidden=[8], latent_dim=3),
                decoder=MLPDecoder(latent_dim=3, hidden=[8], out_shape=[1, 4, 4])),
], ids=["gan", "vae"])
def test_timing_leaves_the_model_and_the_random_streams_untouched(build, monkeypatch):
    monkeypatch.undo()  # the real probe, not the test-suite stand-in
    model = build()
    before = copy.deepcopy(model.state_dict())
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    speedup = precision.bf16_speedup(model, batch_size=5)
    assert speedup > 0 and torch.equal(torch.rand(3), expected)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())
