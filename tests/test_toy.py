"""The toy 2-D GAN: its networks, the fit measures against closed forms, and ToyGANPlots' files and data."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from genlab.callbacks.toy_plots import ToyGANPlots, equilibrium_losses
from genlab.data import QuadraticDataModule
from genlab.losses import resolve_loss
from genlab.metrics.toy import distance_to_parabola, mean_distance_to_parabola, sliced_wasserstein
from genlab.models import GAN
from genlab.nets import MLPDiscriminator, ToyDiscriminator, ToyGenerator
from genlab.nets.toy import feature_layer_error
from tests.helpers import EXPERIMENTS

CONFIG = str(EXPERIMENTS / "toy_quadratic.yaml")


# --- networks ------------------------------------------------------------------------------------------------
def test_toy_generator_layout_and_shape():
    generator = ToyGenerator(latent_dim=3, hidden=[8, 5], negative_slope=0.1)
    assert generator.out_shape == (2,) and generator.latent_dim == 3 and generator.num_classes == 0
    assert [type(m).__name__ for m in generator.body] == ["Linear", "LeakyReLU", "Linear", "LeakyReLU"]
    assert all(m.negative_slope == 0.1 for m in generator.body if isinstance(m, torch.nn.LeakyReLU))
    # 3·8+8 + 8·5+5 + 5·2+2
    assert sum(p.numel() for p in generator.parameters()) == 89
    assert generator(torch.randn(7, 3)).shape == (7, 2)


def test_toy_discriminator_has_three_hidden_layers_and_a_two_unit_feature_layer():
    discriminator = ToyDiscriminator()
    assert discriminator.in_shape == (2,) and discriminator.feature_dim == 2
    linears = [m for m in discriminator.body if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 16), (16, 16), (16, 2)]
    assert isinstance(discriminator.body[-1], torch.nn.LeakyReLU)  # features are the activations
    x = torch.randn(9, 2)
    features = discriminator.features(x)
    assert features.shape == (9, 2)
    # the raw score is the output layer applied to exactly these features
    expected = features @ discriminator.out.weight.T + discriminator.out.bias
    torch.testing.assert_close(discriminator(x), expected.squeeze(1))
    assert discriminator(x).shape == (9,)


def test_feature_layer_check():
    assert feature_layer_error(ToyDiscriminator()) is None
    assert "feature layer has 3 units, not 2" in feature_layer_error(ToyDiscriminator(hidden=[8, 3]))
    assert "no features(x) method" in feature_layer_error(MLPDiscriminator(in_shape=[2], hidden=[4]))


# --- distance to the curve --------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [(1.0, 0.0), (-2.5, 0.3), (0.2, -1.0), (0.0, 0.7)])
def test_points_on_the_curve_are_at_distance_zero(a, b):
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    distances = distance_to_parabola(torch.stack([x, a * x**2 + b], 1), a, b)
    assert distances.abs().max() < 1e-7


def test_distance_to_the_curve_hand_computed():
    # y = x²: below and just above the vertex the nearest curve point is the vertex itself
    points = torch.tensor([[0.0, -0.5], [0.0, 0.3], [0.0, 1.0], [3.0, 0.0]], dtype=torch.float64)
    distances = distance_to_parabola(points, 1.0, 0.0)
    assert distances[0].item() == pytest.approx(0.5, abs=1e-9)
    assert distances[1].item() == pytest.approx(0.3, abs=1e-9)
    # (0, 1) is 1 away vertically but √3/2 from the nearest points (±1/√2, 1/2): the distance is Euclidean
    assert distances[2].item() == pytest.approx(math.sqrt(3) / 2, abs=1e-9)
    # (3, 0): the foot's x solves 2t³ + t - 3 = (t - 1)(2t² + 2t + 3) = 0, so it is (1, 1): distance √5, not 9
    assert distances[3].item() == pytest.approx(math.sqrt(5), abs=1e-9)


@pytest.mark.parametrize("a, b, x0, offset", [(1.0, 0.0, 1.0, 0.1), (1.0, 0.0, 1.0, -0.3), (-2.0, 0.5, 0.25, 0.05),
                                              (0.5, 1.0, -2.0, 0.2)])
def test_offset_along_the_normal_is_the_distance(a, b, x0, offset):
    # within the radius of curvature (1 + 4a²x0²)^(3/2) / 2|a| the foot of the normal is the nearest point
    normal = torch.tensor([2 * a * x0, -1.0], dtype=torch.float64)
    normal /= normal.norm()
    assert abs(offset) < (1 + 4 * a * a * x0 * x0) ** 1.5 / (2 * abs(a))
    point = torch.tensor([x0, a * x0**2 + b], dtype=torch.float64) + offset * normal
    assert distance_to_parabola(point[None], a, b).item() == pytest.approx(abs(offset), abs=1e-9)
    vertical = abs(point[1].item() - a * point[0].item() ** 2 - b)
    assert vertical != pytest.approx(abs(offset), abs=1e-3)  # the vertical residual is a different number


def test_distance_to_the_curve_matches_a_dense_search():
    points = torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.5
    a, b = 1.3, -0.4
    t = torch.linspace(-6, 6, 600_001, dtype=torch.float64)
    curve = torch.stack([t, a * t**2 + b], 1)
    dense = torch.cat([torch.cdist(chunk, curve).min(1).values for chunk in points.split(50)])
    torch.testing.assert_close(distance_to_parabola(points, a, b), dense, atol=1e-6, rtol=0)
    assert mean_distance_to_parabola(points, a, b) == pytest.approx(float(dense.mean()), abs=1e-6)


# --- sliced Wasserstein ---------------------------------------------------------------------------------------
def gaussian(n: int, mean: tuple[float, float], std: float, seed: int) -> torch.Tensor:
    return (torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * std
            + torch.tensor(mean))


def test_sliced_wasserstein_identical_and_shifted_samples():
    x = gaussian(500, (0.0, 0.0), 1.0, seed=0)
    assert sliced_wasserstein(x, x) == 0.0
    # the same sample shifted by μ: every projection moves by θ·μ, and the mean of cos² over the directions is ½
    assert (sliced_wasserstein(x, x + torch.tensor([3.0, 4.0], dtype=torch.float64))
            == pytest.approx(5 / math.sqrt(2), rel=1e-9))


def test_sliced_wasserstein_between_known_gaussians():
    n = 4000
    # N(0, I) vs N(μ, I): SW₂ = |μ|/√2; N(0, I) vs N(0, 9I): every projection's W₂ is |1 - 3| = 2
    shifted = sliced_wasserstein(gaussian(n, (0, 0), 1.0, seed=1), gaussian(n, (1.2, -1.6), 1.0, seed=2))
    assert shifted == pytest.approx(2.0 / math.sqrt(2), abs=0.03)
    scaled = sliced_wasserstein(gaussian(n, (0, 0), 1.0, seed=3), gaussian(n, (0, 0), 3.0, seed=4))
    assert scaled == pytest.approx(2.0, abs=0.06)
    same = sliced_wasserstein(gaussian(n, (0, 0), 1.0, seed=5), gaussian(n, (0, 0), 1.0, seed=6))
    assert same < 0.08  # two finite samples of one distribution: small but not 0
    x, y = gaussian(300, (0, 0), 1.0, seed=7), gaussian(300, (1, 0), 2.0, seed=8)
    assert sliced_wasserstein(x, y) == pytest.approx(sliced_wasserstein(y, x), rel=1e-12)
    with pytest.raises(ValueError, match="equal size"):
        sliced_wasserstein(x, y[:10])


def test_equilibrium_losses():
    log2 = math.log(2)
    assert equilibrium_losses(resolve_loss("non_saturating")) == pytest.approx((2 * log2, log2), abs=1e-9)
    assert equilibrium_losses(resolve_loss("minimax")) == pytest.approx((2 * log2, -log2), abs=1e-9)
    # least squares: D's best constant is ½, so ½(½ - 1)² + ½(½)² = ¼ and ½(½ - 1)² = ⅛
    assert equilibrium_losses(resolve_loss("least_squares")) == pytest.approx((0.25, 0.125), abs=1e-9)
    assert equilibrium_losses(resolve_loss("wasserstein")) is None
    assert equilibrium_losses(resolve_loss("hinge")) is None


# --- the callback --------------------------------------------------------------------------------------------
def test_feature_plot_shows_the_discriminators_two_unit_layer(tmp_path):
    L.seed_everything(0)
    data = QuadraticDataModule(train_size=512, val_size=64, test_size=8, batch_size=32, a=0.5, b=0.2)
    model = GAN(ToyGenerator(), ToyDiscriminator(), noise="uniform")
    plots = ToyGANPlots(every_n_iterations=10, record_every_n_iterations=5, num_points=64, plot_size=160)
    trainer = L.Trainer(max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[plots], default_root_dir=tmp_path)
    trainer.fit(model, data)

    torch.testing.assert_close(plots.real, data.splits.val.samples[:64])
    figure = plots.features_figure(model, 20)
    real_plotted, fake_plotted = (collection.get_offsets() for collection in figure.axes[0].collections)
    with torch.no_grad():
        real_expected = model.discriminator.features(plots.real).numpy()
        fake_expected = model.discriminator.features(model.generator(plots.noise)).numpy()
    np.testing.assert_allclose(real_plotted, real_expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fake_plotted, fake_expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(real_plotted, plots.real.numpy())  # feature space, not the data space

    # the records hold plain floats (never tensors): iteration 0, then every 5 of the 20 iterations
    assert plots.records["iteration"] == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert all(type(value) is float for values in plots.records.values() for value in values)
    assert math.isnan(plots.records["loss_d"][0])  # no losses before the first batch
    with torch.no_grad():
        fake = model.generator(plots.noise)
    assert plots.records["curve_distance"][-1] == pytest.approx(mean_distance_to_parabola(fake, 0.5, 0.2), rel=1e-6)
    assert plots.records["sliced_wasserstein"][-1] == pytest.approx(sliced_wasserstein(fake, plots.real), rel=1e-6)


def test_short_run_writes_the_plots_and_metrics(run_cli, tmp_path):
    callbacks = json.dumps([{"class_path": "genlab.callbacks.ToyGANPlots", "init_args": {
        "every_n_iterations": 100, "record_every_n_iterations": 25, "num_points": 200, "plot_size": 200}}])
    run_cli("fit", "--config", CONFIG, "--trainer.max_steps=600", f"--trainer.callbacks={callbacks}",
            "--data.train_size=2000", "--data.val_size=200", "--trainer.enable_progress_bar=false")
    run = tmp_path / "lightning_logs" / "toy_quadratic" / "version_0"
    toy = run / "toy"
    frames = [0, 100, 200, 300]  # 600 optimizer steps are 300 iterations
    expected = {f"{kind}_iteration_{i:07d}.png" for kind in ("points", "features") for i in frames}
    assert {p.name for p in toy.glob("*.png")} == expected | {"losses.png"}
    for name in expected:
        assert Image.open(toy / name).size == (200, 200)
    assert Image.open(toy / "losses.png").size == (400, 200)

    lines = [json.loads(line) for line in (toy / "metrics.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == list(range(0, 301, 25))
    assert lines[0]["loss_d"] is None and all(0 < line["loss_d"] < 10 for line in lines[1:])
    assert all(line["num_points"] == 200 and line["curve_distance"] >= 0 for line in lines)

    # the last line's curve distance is the one of the saved generator on the callback's fixed noise
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    generator = ToyGenerator(latent_dim=2, hidden=[16, 16], negative_slope=0.2)
    generator.load_state_dict({k.removeprefix("generator."): v for k, v in checkpoint["state_dict"].items()
                               if k.startswith("generator.")})
    noise = next(state["noise"] for key, state in checkpoint["callbacks"].items() if "ToyGANPlots" in key)
    with torch.no_grad():
        fake = generator(noise)
    assert lines[-1]["curve_distance"] == pytest.approx(mean_distance_to_parabola(fake, 1.0, 0.0), rel=1e-5)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert {"toy/points", "toy/features", "toy/losses"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("toy/points")] == frames
    image = events.Images("toy/losses")[0]
    assert (image.width, image.height) == (400, 200)
    assert [e.step for e in events.Scalars("toy/curve_distance")] == list(range(0, 301, 25))


@pytest.mark.parametrize("override, message", [
    ("--model.init_args.discriminator.init_args.hidden=[8, 8, 3]", "feature layer has 3 units, not 2"),
    ("--data.val_size=16", "the data has 10000 training and 16 validation points"),
])
def test_fails_before_training(run_cli, tmp_path, capsys, override, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", CONFIG, override, "--trainer.enable_progress_bar=false")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not list(tmp_path.glob("lightning_logs/*/*/checkpoints"))
