"""The automatic fast path: one gate for every device (bf16-mixed only for a model whose bf16 runs score like
fp32, and only where the device has native bf16 and, on a CPU, runs the model's networks clearly faster in it),
fp32 otherwise, channels-last only where it is measured faster, TF32 off unless asked; an explicit setting always
wins, and the choice is printed and kept with the run. `--trainer.deterministic` is honoured."""

import copy
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from genlab import precision, runtime
from genlab.cli import GenlabCLI
from genlab.data.corruption import PatchNoise
from genlab.models import GAN, VAE, BetaVAE, DenoisingAutoencoder
from genlab.models.classifier import Classifier
from genlab.nets import MLPAutoencoder, MLPDiscriminator, MLPGenerator
from genlab.nets.classifier import MLPClassifier
from genlab.nets.vae import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from tests.helpers import EXPERIMENTS, TINY_GAN

SHORT_GAN = [*TINY_GAN, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]


@pytest.fixture()
def native_bf16(monkeypatch):
    """A CPU with native bf16 (oneDNN supports it, the CPU has the instructions), whatever this machine is."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(runtime, "cpu_bf16_instructions", lambda: True)


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
    run_cli("fit", *SHORT_GAN, f"--data.data_dir={tiny_data}")
    assert calls == [16]  # timed once, at the training batch size
    assert announced[0].startswith("genlab: precision bf16-mixed, memory format contiguous (automatic: CPU")
    assert _saved_precision(tmp_path) == "bf16-mixed"
    assert _saved(tmp_path, "tf32") is False  # TF32 means nothing on a CPU: recorded as off


def test_fit_stays_fp32_where_bf16_is_measured_too_slow(native_bf16, monkeypatch, run_cli, tiny_data, tmp_path,
                                                         announced):
    _measured(monkeypatch, precision.MIN_SPEEDUP - 0.01)
    run_cli("fit", *SHORT_GAN, f"--data.data_dir={tiny_data}")
    assert announced[0].startswith("genlab: precision 32-true, memory format contiguous (automatic: CPU")
    assert _saved_precision(tmp_path) == "32-true"


def test_a_cpu_without_native_bf16_never_trains_in_bf16(monkeypatch, run_cli, tiny_data, tmp_path):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    asked = []
    monkeypatch.setattr(precision, "measure_paths", lambda model, batch_size, bf16: asked.append(bf16) or {
        "32-true contiguous": 1.0, "bf16-mixed contiguous": 0.01})  # bf16 timed anyway would look 100x faster
    run_cli("fit", *SHORT_GAN, f"--data.data_dir={tiny_data}")
    assert asked == [False] and _saved_precision(tmp_path) == "32-true"


def test_explicit_precision_and_memory_format_win_and_nothing_is_timed(native_bf16, monkeypatch, run_cli,
                                                                        tiny_data, tmp_path, announced):
    calls = _measured(monkeypatch, 100.0, channels_last_gain=3.0)
    run_cli("fit", *SHORT_GAN, f"--data.data_dir={tiny_data}", "--trainer.precision=32-true",
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
    run_cli("fit", *SHORT_GAN, f"--data.data_dir={tiny_data}")
    run_cli("test", *SHORT_GAN, f"--data.data_dir={tiny_data}", "--ckpt_path=last")
    assert announced[-1].startswith("genlab: precision 32-true, memory format contiguous (automatic: genlab test")
    checkpoint = torch.load(tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt",
                            weights_only=True)
    assert checkpoint["genlab_training_precisions"] == ["bf16-mixed"]  # what score records quote
    trained = checkpoint["genlab_training_fast_paths"]  # and how they were trained, with why
    assert [(path["precision"], path["memory_format"]) for path in trained] == [("bf16-mixed", "contiguous")]
    assert "measured 100.0x fp32" in trained[0]["reason"]


def test_an_avx512_cpu_that_only_emulates_bf16_is_not_native_although_onednn_supports_it(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(runtime, "_cpuinfo_field", lambda names: "fpu avx2 avx512f avx512bw avx512vl")
    assert runtime.cpu_bf16_instructions() is False and not runtime.cpu_has_native_bf16()
    monkeypatch.setattr(runtime, "_cpuinfo_field", lambda names: "fpu avx2 avx512f avx512_bf16")
    assert runtime.cpu_has_native_bf16()
    monkeypatch.setattr(runtime, "_cpuinfo_field", lambda names: None)  # no /proc/cpuinfo: oneDNN's word stands
    assert runtime.cpu_has_native_bf16()


def test_a_timing_taken_on_a_busy_machine_is_used_once_said_so_and_not_remembered(native_bf16, monkeypatch):
    calls = _measured(monkeypatch, 2.0)
    monkeypatch.setattr(precision, "busy_load", lambda: "load 5.0 on 2 cores")
    model = GAN(generator=MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))
    chosen = precision.choose_fast_path("cpu", "fit", model, 16)
    assert chosen.precision == "bf16-mixed" and "busy (load 5.0 on 2 cores), so not remembered" in chosen.reason
    precision.choose_fast_path("cpu", "fit", model, 16)
    monkeypatch.setattr(precision, "busy_load", lambda: None)
    assert "busy" not in precision.choose_fast_path("cpu", "fit", model, 16).reason
    precision.choose_fast_path("cpu", "fit", model, 16)
    assert calls == [16, 16, 16]  # measured each busy time, then once quietly and remembered


def test_the_cache_tells_cpu_models_apart(monkeypatch):
    calls = _measured(monkeypatch, 2.0)
    model = GAN(generator=MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))
    for name in ("Intel Xeon Platinum 8480", "AMD EPYC 9654", "Intel Xeon Platinum 8480"):
        monkeypatch.setattr(precision, "cpu_model", lambda name=name: name)
        precision.remembered_paths(model, 16, bf16=True)
    assert calls == [16, 16]  # a home directory shared by two machines does not replay one's timing on the other


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


@pytest.mark.parametrize("tf32", [None, False, True], ids=["cpu", "cuda-tf32-off", "cuda-tf32-on"])
def test_a_ddp_child_process_takes_the_first_process_choice(monkeypatch, tf32):
    first = precision.FastPath("bf16-mixed", "channels_last", "chosen by rank 0 | with a bar", tf32)
    precision.remember_choice(first)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert precision.choose_fast_path("cpu") == first
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
    vae = MODELS["conv VAE"]()  # the MLP VAE's bf16 runs are on record, a convolutional VAE's are not
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


# One gate for every device: the decision table, written by hand from docs/guide.md (not computed by genlab).

SHAPE = [1, 4, 4]
FP32, BF16 = "32-true", "bf16-mixed"


def _gan(**settings) -> GAN:
    return GAN(MLPGenerator(latent_dim=4, hidden=[8], out_shape=SHAPE), MLPDiscriminator(in_shape=SHAPE, hidden=[8]),
               **settings)


MODELS = {
    "minimax GAN": lambda: _gan(loss="non_saturating"),
    "saturating minimax GAN": lambda: _gan(loss="minimax"),
    "hinge GAN": lambda: _gan(loss="hinge"),
    "least-squares GAN": lambda: _gan(loss="least_squares"),
    "WGAN clipping": lambda: _gan(loss="wasserstein", clip_weights=0.01),
    "WGAN-GP": lambda: _gan(loss="wasserstein", gradient_penalty=10.0),
    "MLP VAE": lambda: VAE(MLPEncoder(in_shape=SHAPE, hidden=[8], latent_dim=2),
                           MLPDecoder(latent_dim=2, hidden=[8], out_shape=SHAPE)),
    "conv VAE": lambda: VAE(ConvEncoder(in_shape=SHAPE, channels=[4], hidden=8, latent_dim=2),
                            ConvDecoder(latent_dim=2, channels=[4], hidden=8, out_shape=SHAPE)),
    "β-VAE": lambda: BetaVAE(MLPEncoder(in_shape=SHAPE, hidden=[8], latent_dim=2),
                             MLPDecoder(latent_dim=2, hidden=[8], out_shape=SHAPE), beta=4.0),
    "DAE": lambda: DenoisingAutoencoder(MLPAutoencoder(in_shape=SHAPE, hidden=[8], code_dim=2),
                                        PatchNoise(patch_size=2)),
    "classifier": lambda: Classifier(MLPClassifier(in_shape=SHAPE, hidden=[8], num_classes=10)),
}
DEVICES = ["CPU native bf16, bf16 faster", "CPU without native bf16", "CUDA native bf16", "CUDA without native bf16"]
EXPECTED = {  # model: the automatic precision on each of DEVICES
    "minimax GAN":       [BF16, FP32, BF16, FP32],  # non-saturating: gan_mnist's bf16 seeds are on record
    "saturating minimax GAN": [FP32, FP32, FP32, FP32],  # no bf16 runs beside fp32 ones
    "hinge GAN":         [FP32, FP32, FP32, FP32],
    "least-squares GAN": [BF16, FP32, BF16, FP32],
    "WGAN clipping":     [FP32, FP32, FP32, FP32],
    "WGAN-GP":           [FP32, FP32, FP32, FP32],
    "MLP VAE":           [BF16, FP32, BF16, FP32],  # vae_mnist's bf16 seeds are on record (one classifier pair)
    "conv VAE":          [FP32, FP32, FP32, FP32],  # no bf16 runs
    "β-VAE":             [FP32, FP32, FP32, FP32],  # another objective, no bf16 runs
    "DAE":               [FP32, FP32, FP32, FP32],
    "classifier":        [FP32, FP32, FP32, FP32],
}


def _fake_device(monkeypatch, device: str) -> list:
    """This machine made to look like `device` (one of DEVICES); returns the batch sizes timed. On the CUDA ones the
    host CPU has native bf16 measured 2x faster, so a CUDA choice that fell through to the CPU's would show."""
    cuda, native = device.startswith("CUDA"), "without" not in device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100" if native else "Tesla V100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0) if native else (7, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: cuda and native)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native or cuda)
    monkeypatch.setattr(runtime, "cpu_bf16_instructions", lambda: native or cuda)
    return _measured(monkeypatch, 2.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_the_automatic_precision_is_one_gate_for_every_device(kind, device, monkeypatch):
    timed = _fake_device(monkeypatch, device)
    chosen = precision.choose_fast_path("auto", "fit", MODELS[kind](), 8)
    assert chosen.precision == EXPECTED[kind][DEVICES.index(device)], chosen.reason
    if device.startswith("CUDA"):
        assert timed == [] and chosen.tf32 is False and chosen.memory_format == "contiguous"
        assert "TF32 off" in chosen.reason and "TF32 off" in chosen.describe()
    else:
        assert chosen.tf32 is None and "TF32" not in chosen.describe()


def test_on_a_gpu_with_native_bf16_the_reason_names_the_gpu_the_model_and_why_nothing_is_timed(monkeypatch):
    _fake_device(monkeypatch, "CUDA native bf16")
    chosen = precision.choose_fast_path("gpu", "fit", MODELS["least-squares GAN"](), 8)
    assert chosen.reason.startswith("NVIDIA A100 has native bf16 and GAN's bf16 runs score like fp32 (not timed")
    refused = precision.choose_fast_path("gpu", "fit", MODELS["conv VAE"](), 8)
    assert "NVIDIA A100 has native bf16 but VAE's scores in bf16 are not shown to match fp32" in refused.reason


@pytest.mark.parametrize("given", ["32-true", "16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("kind", ["minimax GAN", "WGAN-GP", "conv VAE", "classifier"])
def test_an_explicit_precision_wins_on_cuda(kind, given, monkeypatch):
    _fake_device(monkeypatch, "CUDA native bf16")
    chosen = precision.choose_fast_path("auto", "fit", MODELS[kind](), 8, precision=given)
    assert chosen.precision == given and "precision given" in chosen.reason


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_is_never_chosen_automatically(device, monkeypatch):
    _fake_device(monkeypatch, device)  # a V100 runs fp16 on its tensor cores, yet gets fp32
    chosen = {precision.choose_fast_path("auto", "fit", build(), 8).precision for build in MODELS.values()}
    assert chosen <= {FP32, BF16}


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_evaluation_is_fp32_with_tf32_off_on_a_gpu_where_training_would_use_bf16(subcommand, monkeypatch):
    _fake_device(monkeypatch, "CUDA native bf16")
    chosen = precision.choose_fast_path("auto", subcommand, MODELS["minimax GAN"](), 8)
    assert (chosen.precision, chosen.tf32) == (FP32, False)


def test_tf32_is_off_on_cuda_unless_asked_for_and_applied_to_matmuls_and_convolutions_alike(monkeypatch):
    _fake_device(monkeypatch, "CUDA native bf16")
    asked = precision.choose_fast_path("auto", "fit", MODELS["conv VAE"](), 8, tf32=True)
    assert asked.tf32 is True and asked.describe().startswith("genlab: precision 32-true, memory format contiguous,"
                                                              " TF32 on (automatic:")
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        precision.apply_tf32(True)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        precision.apply_tf32(False)  # cuDNN's own default is on: genlab turns it off explicitly
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_the_cli_on_a_gpu_announces_applies_and_records_tf32(monkeypatch, tiny_data, tmp_path, announced):
    _fake_device(monkeypatch, "CUDA native bf16")  # Lightning, counting no CUDA device, still trains on the CPU
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["genlab"])
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # left on by an earlier run
    try:  # built as `genlab doctor` builds it: a fit's configuration without the fit
        cli = GenlabCLI(args=[*SHORT_GAN, f"--data.data_dir={tiny_data}", "--trainer.logger=false"], run=False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert announced[0].startswith("genlab: precision bf16-mixed, memory format contiguous, TF32 off (automatic:"
                                   " NVIDIA A100 has native bf16 and GAN's bf16 runs score like fp32")
    assert cli.config.tf32 is False and cli.config.trainer.precision == "bf16-mixed"


def test_tf32_asked_for_off_cuda_is_refused_in_one_line(run_cli, tiny_data, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_cli("fit", *SHORT_GAN, f"--data.data_dir={tiny_data}", "--tf32=true")
    error = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(error) == 1
    assert error[0].startswith("genlab: error: --tf32 true: TF32 is a CUDA GPU setting")


# --trainer.deterministic: Lightning's settings stand (genlab overrides none), and cuBLAS gets its workspace.

class SeesDeterminism(Callback):
    """What training runs under: deterministic algorithms, cuDNN's benchmark mode, cuBLAS's workspace setting."""

    seen: ClassVar[list[tuple[bool, bool, str | None]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        SeesDeterminism.seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
                                     os.environ.get("CUBLAS_WORKSPACE_CONFIG")))


@pytest.fixture()
def determinism_restored(monkeypatch):
    """Lightning sets process-wide flags for a deterministic run; put them back for the tests that follow."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")  # unset now, and unset again afterwards
    benchmark = torch.backends.cudnn.benchmark
    SeesDeterminism.seen = []
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = benchmark


@pytest.mark.parametrize("own", [None, ":16:8"], ids=["unset", "set-by-the-user"])
def test_deterministic_is_honoured_and_cublas_gets_its_workspace(own, determinism_restored, monkeypatch, run_cli,
                                                                 tiny_data, announced):
    if own is not None:
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", own)
    run_cli("fit", *SHORT_GAN, f"--data.data_dir={tiny_data}", "--trainer.deterministic=true",
            "--trainer.callbacks+=tests.test_precision.SeesDeterminism")
    workspace = own or ":4096:8"
    assert SeesDeterminism.seen and set(SeesDeterminism.seen) == {(True, False, workspace)}
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == workspace
    said = [line for line in announced if "CUBLAS_WORKSPACE_CONFIG" in line]
    assert said == ([] if own else [("genlab: CUBLAS_WORKSPACE_CONFIG=:4096:8 set for --trainer.deterministic (cuBLAS"
                                    " needs it for deterministic algorithms on CUDA)")])


def test_the_timing_runs_its_training_passes_even_when_called_under_no_grad(monkeypatch):
    """A notebook or benchmark that builds the CLI inside `torch.no_grad()` (benchmarks/evaluation.py did) must not
    crash in the probe's backward pass."""
    monkeypatch.undo()  # the real probe
    model = GAN(generator=MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))
    with torch.no_grad():
        times = precision.measure_paths(model, batch_size=5, bf16=False)
    assert set(times) == {"32-true contiguous"} and times["32-true contiguous"] > 0


MEASURE_PATHS, BUSY_LOAD = precision.measure_paths, precision.busy_load  # the real ones (conftest replaces them)


class _ClockedNetwork(torch.nn.Module):
    """A network whose training pass costs 1.0 s of a fake clock in fp32 and 0.5 s in bf16, and on every other pass
    3.0 s more: a busy neighbour's time slice landing in the middle of the timing."""

    clock: ClassVar[list[float]] = [0.0]  # shared with the copies measure_paths times

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.passes = torch.nn.Linear(2, 2), 0

    def timing_pass(self, n: int) -> torch.Tensor:
        self.passes += 1
        self.clock[0] += (0.5 if torch.is_autocast_enabled("cpu") else 1.0) + (3.0 if self.passes % 2 else 0.0)
        return self.layer(torch.ones(n, 2))


def test_a_busy_neighbour_slowing_some_timed_passes_does_not_change_the_measured_speedup(monkeypatch):
    monkeypatch.setattr(precision, "time", SimpleNamespace(perf_counter=lambda: _ClockedNetwork.clock[0]))
    times = MEASURE_PATHS(_ClockedNetwork(), 4, bf16=True)
    # each path's quiet passes count, not its interrupted ones: the idle machine's 2x, far from the 1.5x threshold
    assert times == {"32-true contiguous": 1.0, "bf16-mixed contiguous": 0.5}


def test_neighbours_are_other_processes_runnable_tasks_in_every_sample(monkeypatch):
    samples = iter([(3, 1), (2, 1), (5, 2), (2, 1), (4, 1)])  # (machine, own): a short-lived task in some samples
    monkeypatch.setattr(precision, "runnable_tasks", lambda: next(samples))
    monkeypatch.setattr(precision.time, "sleep", lambda seconds: None)
    assert precision.runnable_neighbours() == 1
    monkeypatch.setattr(precision, "runnable_tasks", lambda: (3, 3))  # this process's own three threads only
    assert precision.runnable_neighbours() == 0


@pytest.mark.skipif(not os.path.isfile("/proc/stat"), reason="the runnable-task count is Linux's")
def test_this_process_counts_its_own_reading_thread_as_runnable():
    machine, own = runtime.runnable_tasks()
    assert 1 <= own <= machine


@pytest.mark.parametrize(("neighbours", "spare", "busy"), [(0, 0, False), (1, 0, True), (1, 2, False), (3, 2, True)])
def test_the_machine_is_busy_when_more_neighbours_want_a_cpu_than_there_are_spare_cores(neighbours, spare, busy,
                                                                                      monkeypatch):
    monkeypatch.setattr(precision, "runnable_neighbours", lambda: neighbours)
    monkeypatch.setattr(precision, "spare_cores", lambda: spare)
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert (BUSY_LOAD() is not None) is busy


@pytest.mark.skipif(not os.path.isfile("/proc/stat"), reason="the runnable-task count is Linux's")
def test_a_timing_beside_a_busy_core_is_said_to_be_busy_used_once_and_not_remembered(native_bf16, monkeypatch):
    calls = _measured(monkeypatch, 2.0)
    monkeypatch.setattr(precision, "busy_load", BUSY_LOAD)
    monkeypatch.setattr(precision, "spare_cores", lambda: 0)  # as on a machine whose cores torch's threads fill
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # the neighbour alone must tell
    model = GAN(generator=MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]),
                discriminator=MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]))
    neighbour = subprocess.Popen([sys.executable, "-c", "print('spinning', flush=True)\nwhile True: pass"],
                                 stdout=subprocess.PIPE, text=True)  # always wants a CPU
    try:
        assert neighbour.stdout.readline() == "spinning\n"
        reasons = [precision.choose_fast_path("cpu", "fit", model, 16).reason for _ in range(2)]
    finally:
        neighbour.kill()
        neighbour.wait()
    assert all("timed while the machine was busy (" in reason for reason in reasons), reasons
    assert calls == [16, 16]  # timed again: the busy timing was not remembered
