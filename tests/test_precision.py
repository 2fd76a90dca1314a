"""The automatic fast path: bf16-mixed only where this machine runs the model's networks clearly faster in bf16,
fp32 otherwise, channels-last only where it is measured faster; an explicit setting always wins, and the choice
is printed and kept with the run."""

import copy

import pytest
import torch
import yaml

from genlab import precision
from genlab.models import GAN, VAE
from genlab.nets import MLPDiscriminator, MLPGenerator
from genlab.nets.vae import MLPDecoder, MLPEncoder
from tests.conftest import EXPERIMENTS
from tests.test_cli import TINY_GAN as TINY_CLI_GAN

TINY_GAN = [*TINY_CLI_GAN, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]


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


def _measured(monkeypatch, speedup: float, channels_last_gain: float = 1.0) -> list:
    """Replace the timing: bf16 `speedup` times faster than fp32, channels-last `channels_last_gain` times faster
    than contiguous; returns the batch sizes timed."""
    calls = []

    def measure(model, batch_size, bf16):
        calls.append(batch_size)
        return {f"{name} {layout}": 1.0 / (speedup if name == "bf16-mixed" else 1.0)
                / (channels_last_gain if layout == "channels_last" else 1.0)
                for name in ("32-true", "bf16-mixed") for layout in ("contiguous", "channels_last")}

    monkeypatch.setattr(precision, "measure_paths", measure)
    return calls


def _saved(tmp_path, key: str = "precision") -> str:
    config = yaml.safe_load((tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "config.yaml").read_text())
    return config["trainer"]["precision"] if key == "precision" else config[key]


_saved_precision = _saved


def test_fit_picks_bf16_where_it_is_native_and_measured_faster_prints_it_and_saves_it(
        native_bf16, monkeypatch, run_cli, tiny_data, tmp_path, announced):
    calls = _measured(monkeypatch, 2.0)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}")
    assert calls == [16]  # timed once, at the training batch size
    assert announced[0].startswith("genlab: precision bf16-mixed, memory format contiguous (automatic: CPU")
    assert _saved_precision(tmp_path) == "bf16-mixed"


def test_fit_stays_fp32_where_bf16_is_measured_too_slow(native_bf16, monkeypatch, run_cli, tiny_data, tmp_path,
                                                         announced):
    _measured(monkeypatch, precision.MIN_SPEEDUP - 0.01)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}")
    assert announced[0].startswith("genlab: precision 32-true, memory format contiguous (automatic: CPU")
    assert _saved_precision(tmp_path) == "32-true"


def test_a_cpu_without_native_bf16_never_trains_in_bf16(monkeypatch, run_cli, tiny_data, tmp_path):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    asked = []
    monkeypatch.setattr(precision, "measure_paths", lambda model, batch_size, bf16: asked.append(bf16) or {
        "32-true contiguous": 1.0, "bf16-mixed contiguous": 0.01})  # bf16 timed anyway would look 100x faster
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}")
    assert asked == [False] and _saved_precision(tmp_path) == "32-true"


def test_explicit_precision_and_memory_format_win_and_nothing_is_timed(native_bf16, monkeypatch, run_cli,
                                                                        tiny_data, tmp_path, announced):
    calls = _measured(monkeypatch, 100.0, channels_last_gain=3.0)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.precision=32-true",
            "--memory_format=contiguous")
    assert calls == [] and announced == []
    assert _saved_precision(tmp_path) == "32-true" and _saved(tmp_path, "memory_format") == "contiguous"


CONV_GAN = [
    "--config", str(EXPERIMENTS / "dcgan_emoji.yaml"),
    "--model.init_args.generator.init_args.base_channels=4",
    "--model.init_args.discriminator.init_args.base_channels=4",
    "--data.init_args.batch_size=16", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--evaluate=false", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
]


def test_channels_last_where_measured_faster_trains_in_that_layout_and_resumes(native_bf16, monkeypatch, run_cli,
                                                                               tiny_data, tmp_path, announced):
    _measured(monkeypatch, 1.0, channels_last_gain=precision.MIN_LAYOUT_GAIN + 0.05)
    run_cli("fit", *CONV_GAN, f"--data.data_dir={tiny_data}")
    assert "precision 32-true, memory format channels_last" in announced[0]
    run = tmp_path / "lightning_logs" / "dcgan_emoji" / "version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["memory_format"] == "channels_last"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    weights = [value for value in checkpoint["state_dict"].values() if value.dim() == 4]
    assert weights and all(value.is_contiguous(memory_format=torch.channels_last) for value in weights)
    run_cli("fit", *CONV_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=2", "--ckpt_path=last",
            "--memory_format=contiguous")  # a checkpoint in one layout loads into the other


def test_channels_last_barely_faster_is_not_worth_it(native_bf16, monkeypatch):
    _measured(monkeypatch, 1.0, channels_last_gain=precision.MIN_LAYOUT_GAIN - 0.05)
    model = GAN(generator=MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))
    assert precision.choose_fast_path("cpu", "fit", model, 8).memory_format == "contiguous"


def test_test_evaluates_in_fp32_even_where_training_would_use_bf16(native_bf16, monkeypatch, run_cli, tiny_data,
                                                                    tmp_path, announced):
    _measured(monkeypatch, 100.0)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}")
    run_cli("test", *TINY_GAN, f"--data.data_dir={tiny_data}", "--ckpt_path=last")
    assert announced[-1].startswith("genlab: precision 32-true, memory format contiguous (automatic: genlab test")
    checkpoint = torch.load(tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt",
                            weights_only=True)
    assert checkpoint["genlab_training_precisions"] == ["bf16-mixed"]  # what score records quote


def test_a_measurement_is_made_once_per_network_and_batch_size_and_then_read_back(monkeypatch):
    calls = _measured(monkeypatch, 2.0)
    model = GAN(generator=MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))

    def bf16_speedup(model, batch_size):
        times = precision.remembered_paths(model, batch_size, bf16=True)
        return times["32-true contiguous"] / times["bf16-mixed contiguous"]

    assert bf16_speedup(model, 16) == 2.0
    _measured(monkeypatch, 1.0)  # a second measurement would now say otherwise: the first one stands
    assert bf16_speedup(model, 16) == 2.0
    wider = GAN(generator=MLPGenerator(latent_dim=4, hidden=[9], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))
    assert bf16_speedup(wider, 16) == 1.0 and bf16_speedup(model, 32) == 1.0
    assert calls == [16]


def test_a_ddp_child_process_takes_the_first_process_choice(monkeypatch):
    monkeypatch.setenv(precision.CHOICE_VARIABLE, "bf16-mixed|channels_last|chosen by rank 0")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert precision.choose_fast_path("cpu") == precision.FastPath("bf16-mixed", "channels_last", "chosen by rank 0")
    monkeypatch.setenv("LOCAL_RANK", "0")  # the first process measures for itself
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert precision.choose_fast_path("cpu").precision == "32-true"


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
    times = precision.measure_paths(model, batch_size=5, bf16=True)
    assert set(times) == {"32-true contiguous", "bf16-mixed contiguous"} and all(t > 0 for t in times.values())
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())


def test_a_model_whose_bf16_scores_are_not_validated_stays_fp32_even_where_bf16_is_faster(native_bf16, monkeypatch):
    _measured(monkeypatch, 100.0)
    vae = VAE(encoder=MLPEncoder(in_shape=[1, 4, 4], hidden=[8], latent_dim=3),
              decoder=MLPDecoder(latent_dim=3, hidden=[8], out_shape=[1, 4, 4]))
    chosen = precision.choose_fast_path("cpu", "fit", vae, 8)
    assert chosen.precision == "32-true" and "not shown to match fp32" in chosen.reason
    assert precision.choose_fast_path("cpu", "fit", vae, 8, precision="bf16-mixed").precision == "bf16-mixed"


@pytest.mark.parametrize("constraint", [{"gradient_penalty": 10.0, "loss": "wasserstein"},
                                        {"clip_weights": 0.01, "loss": "wasserstein"}], ids=["wgan-gp", "wgan"])
def test_wgans_stay_fp32_where_bf16_is_faster_and_other_gans_may_take_it(constraint, native_bf16, monkeypatch):
    from genlab.models import GAN
    from genlab.nets import MLPDiscriminator, MLPGenerator

    _measured(monkeypatch, 100.0)

    def gan(**settings) -> GAN:
        return GAN(MLPGenerator(latent_dim=4, hidden=[8], out_shape=(1, 4, 4)),
                   MLPDiscriminator(in_shape=(1, 4, 4), hidden=[8]), **settings)

    chosen = precision.choose_fast_path("cpu", "fit", gan(**constraint), 8)
    assert chosen.precision == "32-true" and "not shown to match fp32" in chosen.reason
    assert precision.choose_fast_path("cpu", "fit", gan(), 8).precision == "bf16-mixed"
