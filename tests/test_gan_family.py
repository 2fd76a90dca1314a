"""The GAN family beyond the basics: WGAN (clipping, gradient penalty), conditional GANs, the EmojiOne DCGAN,
the mode-collapse signals the GAN module logs, and fetching EmojiOne with npm.

Where a number can be known in closed form it is: tiny networks with known input gradients (a linear and a
quadratic critic) and a generator whose output is a parameter make every logged value a formula.
"""

from __future__ import annotations

import io
import math
import os
import stat
import sys
import tarfile
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from genlab.callbacks import SampleGrid
from genlab.cli import GenlabCLI
from genlab.data import EmojiDataModule
from genlab.errors import GenlabError
from genlab.losses import LeastSquares, Wasserstein, gradient_penalty
from genlab.models import GAN
from genlab.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from genlab.nets.base import Discriminator, Generator
from tests.helpers import EXPERIMENTS

SHAPE = (1, 2, 3)  # six pixels keep the closed forms readable


class LinearCritic(Discriminator):
    """D(x) = w·x + b, so ∇ₓD = w at every input."""

    def __init__(self, weight: Tensor, bias: float = 0.0, in_shape: tuple[int, ...] = SHAPE) -> None:
        super().__init__()
        self.in_shape = in_shape
        self.weight, self.bias = nn.Parameter(weight.clone()), nn.Parameter(torch.tensor(bias, dtype=weight.dtype))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return x.flatten(1) @ self.weight + self.bias


class QuadraticCritic(Discriminator):
    """D(x, y) = ½·a_y·‖x‖², so ∇ₓD = a_y·x depends on the point and the label."""

    def __init__(self, scales: Tensor, in_shape: tuple[int, ...] = SHAPE) -> None:
        super().__init__()
        self.in_shape, self.num_classes = in_shape, len(scales)
        self.scales = nn.Parameter(scales.clone())

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return 0.5 * self.scales[labels] * x.flatten(1).pow(2).sum(1)


class ConstantGenerator(Generator):
    """G(z) = c whatever z is: the fakes, and the generator's gradients, are known exactly."""

    def __init__(self, value: Tensor, latent_dim: int = 3) -> None:
        super().__init__()
        self.latent_dim, self.out_shape = latent_dim, tuple(value.shape)
        self.value = nn.Parameter(value.clone())

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.value.expand(z.shape[0], *self.out_shape)


class LabelGenerator(Generator):
    """A conditional generator whose every pixel shows its label: y ↦ 2·y/(C - 1) - 1."""

    def __init__(self, num_classes: int = 10, out_shape: tuple[int, ...] = (1, 4, 5), latent_dim: int = 2) -> None:
        super().__init__()
        self.latent_dim, self.num_classes, self.out_shape = latent_dim, num_classes, out_shape
        self.unused = nn.Linear(1, 1)  # an optimizer needs a parameter

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        assert labels is not None
        level = 2 * labels.to(z.dtype) / (self.num_classes - 1) - 1
        return level.view(-1, 1, 1, 1).expand(-1, *self.out_shape) + 0 * z.sum(1).view(-1, 1, 1, 1)


def _sgd(lr: float):
    return lambda parameters: torch.optim.SGD(parameters, lr=lr)


def _fit(model: GAN, samples: Tensor, labels: Tensor, batch_size: int, iterations: int) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=-1, max_epochs=1, limit_train_batches=iterations, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
        log_every_n_steps=1,
    )
    trainer.fit(model, DataLoader(TensorDataset(samples, labels), batch_size=batch_size))
    return trainer


# --- the gradient penalty against its definition -----------------------------------------------------------


def test_penalty_of_a_linear_critic_is_the_squared_distance_of_its_weight_norm_from_one():
    torch.manual_seed(0)
    weight = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.5, -0.5], dtype=torch.float64)  # ‖w‖ = √7.75
    real, fake = torch.randn(16, *SHAPE, dtype=torch.float64), torch.randn(16, *SHAPE, dtype=torch.float64)
    penalty = gradient_penalty(LinearCritic(weight), real, fake)
    assert penalty.item() == pytest.approx((math.sqrt(7.75) - 1) ** 2, rel=1e-12)


def test_penalty_of_a_quadratic_critic_follows_the_interpolates_and_the_labels():
    torch.manual_seed(1)
    scales = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    real, fake = torch.randn(12, *SHAPE, dtype=torch.float64), torch.randn(12, *SHAPE, dtype=torch.float64)
    labels = torch.arange(12) % 3
    critic = QuadraticCritic(scales)
    penalty = gradient_penalty(critic, real, fake, labels, generator=torch.Generator().manual_seed(7))

    epsilon = torch.rand((12, 1, 1, 1), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    mixed_norms = (epsilon * real + (1 - epsilon) * fake).flatten(1).norm(dim=1)  # ‖∇D(x̂)‖ = a_y·‖x̂‖
    expected = (scales[labels] * mixed_norms - 1).pow(2).mean()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-12)

    # The penalty is differentiable in the critic's parameters (create_graph): ∂/∂a_k = Σ_{y=k} 2(a_k‖x̂‖-1)‖x̂‖/n.
    penalty.backward()
    terms = 2 * (scales[labels] * mixed_norms - 1) * mixed_norms / 12
    expected_grad = torch.zeros(3, dtype=torch.float64).index_add_(0, labels, terms)
    torch.testing.assert_close(critic.scales.grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_a_batchnorm_critic_is_refused_with_a_gradient_penalty():
    with pytest.raises(GenlabError, match="gradient_penalty needs a critic without BatchNorm.*DCGANDiscriminator"):
        GAN(DCGANGenerator(latent_dim=8, base_channels=4, image_size=16),
            DCGANDiscriminator(base_channels=4, image_size=16), loss="wasserstein", gradient_penalty=10.0)


# --- weight clipping ----------------------------------------------------------------------------------------


def test_clipping_keeps_every_critic_weight_inside_c_and_leaves_the_generator_alone():
    torch.manual_seed(0)
    critic = MLPDiscriminator(in_shape=[1, 28, 28], hidden=[32, 16])  # Xavier weights reach far beyond 0.01
    generator = MLPGenerator(latent_dim=8, hidden=[32])
    before = max(p.abs().max().item() for p in critic.parameters() if p.dim() > 1)
    assert before > 0.05
    model = GAN(generator, critic, loss="wasserstein", n_critic=5, clip_weights=0.01,
                discriminator_optimizer=lambda p: torch.optim.RMSprop(p, lr=5e-5),
                generator_optimizer=lambda p: torch.optim.RMSprop(p, lr=5e-5))
    _fit(model, torch.rand(64, 1, 28, 28) * 2 - 1, torch.zeros(64, dtype=torch.long), batch_size=16, iterations=2)
    for parameter in critic.parameters():
        assert parameter.abs().max().item() <= 0.01
    weights = torch.cat([p.flatten() for p in critic.parameters()])
    assert weights.abs().max().item() == pytest.approx(0.01)  # clipping, not a tiny learning rate, did this
    assert max(p.abs().max().item() for p in generator.parameters()) > 0.05


# --- the logged signals, in closed form -----------------------------------------------------------------------


@pytest.mark.parametrize("penalty_weight", [0.0, 10.0])
def test_logged_signals_equal_their_formulas(penalty_weight):
    """With learning rate 0 nothing moves, so every logged number has a closed form.

    D(x) = w·x + b and G(z) = c: the critic loss E[D(c)] - E[D(x)] has gradient c - mean(x) in w (and 0 in b),
    the penalty (‖w‖ - 1)² adds 2(‖w‖ - 1)·w/‖w‖; the generator loss -D(c) has gradient -w in c.
    """
    torch.manual_seed(3)
    weight, bias = torch.tensor([0.3, -0.2, 0.9, 0.4, -1.1, 0.6]), 0.25
    constant = torch.randn(*SHAPE)
    real = torch.randn(8, *SHAPE)
    model = GAN(ConstantGenerator(constant), LinearCritic(weight, bias), loss="wasserstein",
                gradient_penalty=penalty_weight, generator_optimizer=_sgd(0.0), discriminator_optimizer=_sgd(0.0))
    metrics = _fit(model, real, torch.zeros(8, dtype=torch.long), batch_size=8, iterations=1).callback_metrics

    d_real = (real.flatten(1) @ weight + bias).mean()
    d_fake = constant.flatten() @ weight + bias
    norm = weight.norm()
    critic_gradient = (constant - real.mean(0)).flatten() + penalty_weight * 2 * (norm - 1) * weight / norm
    expected = {
        "d/real": d_real, "d/fake": d_fake, "wasserstein_estimate": d_real - d_fake, "loss/d": d_fake - d_real,
        "grad_norm/d": critic_gradient.norm(), "loss/g": -d_fake, "grad_norm/g": norm,
    }
    if penalty_weight:
        expected["loss/gradient_penalty"] = (norm - 1) ** 2
    for key, value in expected.items():
        assert metrics[key].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6), key
    assert metrics["grad_norm/d"].dim() == 0 and metrics["grad_norm/d"].dtype == torch.float32


# --- conditional generators -------------------------------------------------------------------------------


def test_conditional_grid_has_one_row_per_class_and_sample_honours_labels():
    model = GAN(LabelGenerator(), MLPDiscriminator(in_shape=[1, 4, 5], hidden=[4], num_classes=10))
    grid = SampleGrid(num_samples=35, seed=0).grid(model)  # rounded down to 3 per class, one row per class
    pad, height, width = 2, 4, 5
    assert grid.shape == (3, pad + 10 * (height + pad), pad + 3 * (width + pad))
    for row in range(10):
        for column in range(3):
            top, left = pad + row * (height + pad), pad + column * (width + pad)
            cell = grid[:, top : top + height, left : left + width]
            torch.testing.assert_close(cell, torch.full_like(cell, row / 9))  # [-1, 1] shown as [0, 1]

    labels = torch.tensor([7, 3, 3, 0, 9])
    torch.testing.assert_close(model.sample(5, labels)[:, 0, 0, 0], 2 * labels.float() / 9 - 1)
    torch.testing.assert_close(model.sample(12)[:, 0, 0, 0], 2 * (torch.arange(12) % 10).float() / 9 - 1)


def test_the_conditional_mlp_nets_take_the_one_hot_label_beside_noise_and_image():
    generator = MLPGenerator(latent_dim=100, hidden=[128, 256], num_classes=10)
    critic = MLPDiscriminator(hidden=[512, 256], num_classes=10)
    assert generator.net[0].in_features == 110 and critic.net[0].in_features == 794
    z = torch.randn(2, 100).repeat_interleave(10, 0)  # each noise vector with every label
    generator.eval()
    images = generator(z, torch.arange(10).repeat(2))
    manual = generator.net(torch.cat([z, torch.eye(10).repeat(2, 1)], 1)).view(20, 1, 28, 28)
    torch.testing.assert_close(images, manual)
    assert (images[0] - images[1]).abs().max() > 1e-3  # the label changes the image


# --- every new experiment, one short run on tiny data ---------------------------------------------------------

FAMILY = {
    "wgan_mnist": {"loss": Wasserstein, "n_critic": 5, "clip": 0.01, "optimizer": ("RMSprop", 5e-5, None)},
    "wgan_fashion": {"loss": Wasserstein, "n_critic": 5, "clip": 0.01, "optimizer": ("RMSprop", 5e-5, None)},
    "wgan_gp_mnist": {"loss": Wasserstein, "n_critic": 5, "penalty": 10.0, "optimizer": ("Adam", 1e-4, (0.0, 0.9))},
    "wgan_gp_fashion": {"loss": Wasserstein, "n_critic": 5, "penalty": 10.0, "optimizer": ("Adam", 1e-4, (0.0, 0.9))},
    "cgan_mnist": {"classes": 10, "inputs": (110, 794)},
    "cgan_fashion": {"classes": 10, "inputs": (110, 794)},
    "cgan_conv_mnist": {"classes": 10, "inputs": (106, 11)},
    "dcgan_fashion": {"classes": 0},
    "dcgan_emoji": {"loss": LeastSquares, "generator_scale": 1.0, "iterations": 20000, "grid_every": 200,
                    "optimizer": ("Adam", 3e-4, (0.5, 0.999))},
}


def _run(config: str, data: Path, *extra: str) -> GenlabCLI:
    return GenlabCLI(args=[
        "fit", "--config", str(EXPERIMENTS / f"{config}.yaml"), f"--data.data_dir={data}", "--data.batch_size=8",
        "--data.val_size=16", "--trainer.enable_progress_bar=false", "--evaluate=false", *extra,
    ])


def test_the_family_table_covers_every_new_experiment():
    assert set(FAMILY) <= {path.stem for path in EXPERIMENTS.glob("*.yaml")}


@pytest.mark.parametrize("config", sorted(FAMILY))
def test_experiment_runs_and_logs_the_mode_collapse_signals(config, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["genlab"])
    expect = FAMILY[config]
    # n_critic batches: the first generator step comes after n_critic critic steps
    cli = _run(config, tiny_data, f"--trainer.fast_dev_run={expect.get('n_critic', 1)}")
    model, metrics = cli.model, cli.trainer.callback_metrics
    assert isinstance(model, GAN)
    for key in ("d/real", "d/fake", "loss/d", "loss/g", "grad_norm/d", "grad_norm/g"):
        assert torch.isfinite(metrics[key]), key
    assert metrics["grad_norm/d"] > 0 and metrics["grad_norm/g"] > 0

    if expect.get("loss") is Wasserstein:
        assert isinstance(model.loss, Wasserstein) and model.n_critic == expect["n_critic"]
        assert metrics["wasserstein_estimate"].item() == pytest.approx(
            (metrics["d/real"] - metrics["d/fake"]).item(), rel=1e-5, abs=1e-6)
    if "clip" in expect:
        assert model.clip_weights == expect["clip"]
        assert max(p.abs().max().item() for p in model.discriminator.parameters()) <= expect["clip"]
    if "penalty" in expect:
        assert model.gp_weight == expect["penalty"] and model.clip_weights is None
        assert torch.isfinite(metrics["loss/gradient_penalty"])
    if "optimizer" in expect:
        name, lr, betas = expect["optimizer"]
        for optimizer in model.optimizers():
            assert type(optimizer.optimizer).__name__ == name and optimizer.param_groups[0]["lr"] == lr
            if betas:
                assert tuple(optimizer.param_groups[0]["betas"]) == betas
    assert model.num_classes == expect.get("classes", 0)
    if "inputs" in expect:
        first = [next(m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
                 for net in (model.generator, model.discriminator)]
        assert ((first[0].in_features, getattr(first[1], "in_features", None) or first[1].in_channels)
                == expect["inputs"])
    if "generator_scale" in expect:  # the reference's Algorithm 1: E[(D(G(z)) - 1)²], no ½
        scores = torch.tensor([0.0, 0.5, 2.0])
        assert model.loss.generator(scores).item() == pytest.approx(((scores - 1) ** 2).mean().item())
        assert model.loss.discriminator(scores, scores).item() == pytest.approx(
            (0.5 * (scores - 1) ** 2 + 0.5 * scores**2).mean().item())
    if "iterations" in expect:  # max_steps counts optimizer steps: one D and one G step per iteration
        assert cli.config.fit.trainer.max_steps == 2 * expect["iterations"] and model.n_critic == 1
        grids = [c for c in cli.trainer.callbacks if isinstance(c, SampleGrid)]
        assert [g.every_n_iterations for g in grids] == [expect["grid_every"]]


def test_loss_accepts_a_name_as_well_as_a_class_path(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["genlab"])
    cli = GenlabCLI(args=["--config", str(EXPERIMENTS / "dcgan_emoji.yaml"), f"--data.data_dir={tiny_data}",
                          "--model.init_args.loss=least_squares"], run=False)
    assert cli.model.loss == LeastSquares(generator_scale=0.5)


# --- fetching EmojiOne with npm ------------------------------------------------------------------------------


def _png_bytes(rgba: tuple[int, int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (32, 32), rgba).save(buffer, format="PNG")
    return buffer.getvalue()


def _fake_npm(folder: Path, tarball_members: dict[str, bytes] | None, fail: str = "") -> Path:
    """An `npm` executable that records its arguments and writes a tarball laid out like emojione-assets."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = folder / "payload.tgz"
    if tarball_members is not None:
        with tarfile.open(payload, "w:gz") as archive:
            for name, data in tarball_members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    script = folder / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, shutil, sys\n"
        f"open({str(folder / 'calls.txt')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"if {fail!r}:\n"
        f"    sys.stderr.write('npm error code ENOTFOUND\\nnpm error {fail}\\n'); sys.exit(1)\n"
        f"shutil.copy({str(payload)!r}, os.path.join(os.getcwd(), 'emojione-assets-4.5.0.tgz'))\n"
        "print('emojione-assets-4.5.0.tgz')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_prepare_data_fetches_the_png_32_folder_with_npm(tmp_path, monkeypatch):
    colours = {"1f600": (255, 0, 0, 255), "1f601": (0, 0, 255, 255), "1f602": (0, 255, 0, 0)}
    members = {f"package/png/32/{name}.png": _png_bytes(rgba) for name, rgba in colours.items()}
    members |= {"package/png/64/1f600.png": _png_bytes((9, 9, 9, 255)), "package/LICENSE.md": b"licence text",
                "package/png/32/../../../escape.png": _png_bytes((1, 2, 3, 255))}
    bin_dir = _fake_npm(tmp_path / "bin", members)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "data"

    data = EmojiDataModule(data_dir=str(root), batch_size=2)
    data.prepare_data()
    data.setup()

    folder = root / "EmojiOne" / "png" / "32"
    assert (bin_dir / "calls.txt").read_text().split() == ["pack", "emojione-assets@4.5.0"]
    assert sorted(p.name for p in folder.iterdir()) == ["1f600.png", "1f601.png", "1f602.png", "LICENSE.md"]
    assert not list(tmp_path.rglob("escape.png"))  # a path leaving png/32 is not extracted at all
    assert [p.name for p in (root / "EmojiOne" / "png").iterdir()] == ["32"]  # no staging folder left behind
    samples = data.splits.train.samples  # sorted by name: red, blue, transparent green → white background
    expected = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, 1.0]])
    assert samples.shape == (3, 3, 32, 32)
    torch.testing.assert_close(samples[:, :, 5, 5], expected)

    (bin_dir / "calls.txt").unlink()
    EmojiDataModule(data_dir=str(root)).prepare_data()  # present now: npm is not asked again
    assert not (bin_dir / "calls.txt").exists()


def test_a_failing_npm_is_one_line_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    bin_dir = _fake_npm(tmp_path / "bin", None, fail="getaddrinfo ENOTFOUND registry.npmjs.org")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "data"
    with pytest.raises(GenlabError) as error:
        EmojiDataModule(data_dir=str(root)).prepare_data()
    message = str(error.value)
    assert "\n" not in message and "ENOTFOUND registry.npmjs.org" in message
    assert f"put the EmojiOne 32x32 PNGs in {(root / 'EmojiOne' / 'png' / '32').resolve()}" in message
    assert list((root / "EmojiOne" / "png").iterdir()) == []


def test_without_npm_the_error_says_where_to_put_the_pngs(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    root = tmp_path / "data"
    with pytest.raises(GenlabError,
                       match=r"holds no PNGs and npm is not on PATH to fetch them: put the EmojiOne") as error:
        EmojiDataModule(data_dir=str(root)).prepare_data()
    assert "\n" not in str(error.value) and str((root / "EmojiOne" / "png" / "32").resolve()) in str(error.value)


def test_download_off_never_calls_npm(tmp_path, monkeypatch):
    bin_dir = _fake_npm(tmp_path / "bin", {"package/png/32/a.png": _png_bytes((0, 0, 0, 255))})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(GenlabError, match="does not exist"):
        EmojiDataModule(data_dir=str(tmp_path / "data"), download=False).prepare_data()
    assert not (bin_dir / "calls.txt").exists()


def test_signals_are_logged_only_on_logging_steps():
    """Values logged between `log_every_n_steps` would be computed and dropped: the GAN skips them."""
    torch.manual_seed(0)
    model = GAN(ConstantGenerator(torch.randn(*SHAPE)), LinearCritic(torch.ones(6), 0.0), loss="wasserstein",
                generator_optimizer=_sgd(0.0), discriminator_optimizer=_sgd(0.0))
    logged: list[int] = []
    model.log_dict = lambda *args, **kwargs: logged.append(model.iteration)  # type: ignore[method-assign]
    trainer = L.Trainer(max_epochs=1, limit_train_batches=7, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", log_every_n_steps=3)
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(7, *SHAPE), torch.zeros(7, dtype=torch.long))))
    assert logged == [3, 6]  # the 3rd and 6th batches of 7


# --- how samples are drawn: BatchNorm mode ----------------------------------------------------------------


def _dcgan_with_running_statistics(mode: str) -> GAN:
    from genlab.nets import InfoGANDiscriminator, InfoGANGenerator

    torch.manual_seed(0)
    model = GAN(InfoGANGenerator(latent_dim=4), InfoGANDiscriminator(), sampling_batchnorm=mode)
    with torch.no_grad():
        for _ in range(3):  # running statistics that differ from any one batch's
            model.generator(torch.rand(16, 4) * 3)
    return model


def test_batch_statistics_sampling_is_the_generator_in_training_mode_and_leaves_running_statistics_alone():
    import copy

    model = _dcgan_with_running_statistics("batch")
    z = torch.rand(10, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    reference = copy.deepcopy(model.generator).train()  # the notebook: G(z) with G in training mode
    with torch.no_grad():
        expected = reference(z)
    buffers = {name: value.clone() for name, value in model.generator.named_buffers()}
    torch.testing.assert_close(_decode(model, z), expected, rtol=0, atol=0)
    for name, value in model.generator.named_buffers():
        assert torch.equal(value, buffers[name]), name  # sampling never moves the running statistics
    norms = [m for m in model.generator.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    assert norms and all(m.training == model.training and m.track_running_stats for m in norms)  # modes put back
    assert model.sampler_settings()["batchnorm"].startswith("batch statistics")


def _decode(model: GAN, z: Tensor) -> Tensor:
    from genlab.models.base import evaluation_mode

    with evaluation_mode(model):
        return model.decode(z)


def test_running_statistics_sampling_is_eval_mode_and_the_sampler_can_be_switched_for_a_while():
    import copy

    model = _dcgan_with_running_statistics("running")
    z = torch.rand(10, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        eval_mode = copy.deepcopy(model.generator).eval()(z)
        train_mode = copy.deepcopy(model.generator).train()(z)
    assert not torch.allclose(eval_mode, train_mode)  # the two modes differ for these statistics
    torch.testing.assert_close(_decode(model, z), eval_mode, rtol=0, atol=0)
    with model.sampler("batch"):
        torch.testing.assert_close(_decode(model, z), train_mode, rtol=0, atol=0)
    assert model.sampling_batchnorm == "running" and model.sampler_variants == ("running", "batch")
    with pytest.raises(GenlabError, match="has no sampler 'mixture'"), model.sampler("mixture"):
        pass


def test_a_mistyped_loss_name_is_one_line_listing_the_names(run_cli, capsys):
    """Loss names are a Literal, so `--help` lists them; a wrong one is answered with the list."""
    with pytest.raises(SystemExit):
        run_cli("fit", "--config", str(EXPERIMENTS / "toy_quadratic.yaml"), "--model.init_args.loss=hing",
                "--trainer.fast_dev_run=true")
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "'hing' is not one of 'minimax', 'non_saturating', 'least_squares', 'wasserstein'," \
        " 'hinge'" in error[0]
