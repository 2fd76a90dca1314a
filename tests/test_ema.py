"""The moving average of a GAN's generator: the closed-form average, the warm-up and ramp, training left
unchanged, exact resume, and samples and scores drawn from it on request."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genlab.callbacks import GenerativeMetrics
from genlab.errors import GenlabError
from genlab.metrics import ClassifierMetrics
from genlab.models import GAN
from genlab.nets import MLPDiscriminator, MLPGenerator
from genlab.training.ema import WeightAverage
from tests.helpers import TINY_GAN, load_checkpoint

EMA = ["--model.init_args.ema_decay=0.9", "--model.init_args.ema_warmup_iterations=3"]


def test_with_a_constant_decay_the_average_is_the_closed_form_weighted_sum():
    network = nn.Linear(3, 2)
    decay = 0.1  # below the ramp's first value (1/10), so every update after the warm-up uses 0.1
    average = WeightAverage(network, decay=decay, warmup_iterations=1)
    weights = [torch.randn(2, 3, generator=torch.Generator().manual_seed(k)) for k in range(6)]
    for iteration, w in enumerate(weights, start=1):
        network.weight.data.copy_(w)
        average.update(network, iteration)
    # iteration 1 copies w0; then a_n = decay^n w0 + (1 - decay) sum_{i=1..n} decay^(n-i) w_i
    n = len(weights) - 1
    expected = decay**n * weights[0] + sum((1 - decay) * decay ** (n - i) * weights[i] for i in range(1, n + 1))
    torch.testing.assert_close(average.average.weight, expected, rtol=1e-6, atol=1e-7)
    assert int(average.updates) == n


def test_the_warm_up_copies_and_the_ramp_reaches_the_configured_decay():
    average = WeightAverage(nn.Linear(1, 1), decay=0.5, warmup_iterations=100)
    assert average.current_decay(1) == average.current_decay(100) == 0.0  # copies during the warm-up
    ramp = []
    for k in range(10):
        average.load_state_dict({**average.state_dict(), "updates": torch.tensor(k)})  # as a checkpoint brings it
        ramp.append(average.current_decay(101))
    # (1 + k) / (10 + k): 1/10, 2/11, 3/12, 4/13, 5/14, 6/15, 7/16, 8/17, 9/18 = 0.5, then capped at 0.5
    assert ramp == pytest.approx([1 / 10, 2 / 11, 3 / 12, 4 / 13, 5 / 14, 6 / 15, 7 / 16, 8 / 17, 0.5, 0.5])


def test_batchnorm_statistics_are_copied_not_averaged():
    network = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    average = WeightAverage(network, decay=0.9, warmup_iterations=0)
    network[1].running_mean.fill_(3.0)
    network[1].running_var.fill_(5.0)
    network[1].num_batches_tracked.fill_(7)
    average.update(network, iteration=5)
    for copied, followed in zip(average.average.buffers(), network.buffers(), strict=True):
        assert torch.equal(copied, followed)  # every statistic, the variance and the count too
    assert not average.average[1].weight.requires_grad and not average.average.training


def test_the_average_follows_the_generator_after_its_step_not_before():
    """During the warm-up the average is a copy of the generator: of its weights after each update, so an update
    wired one step late (before the optimizer step) leaves it a step behind."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    gan = GAN(MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]),
              MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8]), ema_decay=0.9, ema_warmup_iterations=1000)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(gan, DataLoader(TensorDataset(torch.rand(24, 1, 4, 4) * 2 - 1, torch.zeros(24)), batch_size=8))
    for averaged, trained in zip(gan.generator_average.average.parameters(), gan.generator.parameters(), strict=True):
        assert torch.equal(averaged, trained)


def test_the_average_does_not_change_training_and_resumes_exactly(run_cli, tiny_data, tmp_path):
    common = [*TINY_GAN, f"--data.data_dir={tiny_data}"]
    run_cli("fit", *common, "--trainer.logger.init_args.name=plain", "--trainer.max_epochs=2")
    run_cli("fit", *common, *EMA, "--trainer.logger.init_args.name=straight", "--trainer.max_epochs=2")
    run_cli("fit", *common, *EMA, "--trainer.logger.init_args.name=resumed", "--trainer.max_epochs=1")
    run_cli("fit", *common, *EMA, "--trainer.logger.init_args.name=resumed", "--trainer.max_epochs=2",
            "--ckpt_path=last")
    plain, straight, resumed = (load_checkpoint(tmp_path / "lightning_logs" / name / "version_0" / "checkpoints"
                                                / "last.ckpt")["state_dict"]
                                for name in ("plain", "straight", "resumed"))
    averaged = [key for key in straight if key.startswith("generator_average.")]
    assert averaged and straight.keys() == resumed.keys() == set(plain) | set(averaged)
    for key in plain:  # the same training with and without the average
        assert torch.equal(plain[key], straight[key]), key
    for key in straight:  # and a resumed run ends with the same average
        assert torch.equal(straight[key], resumed[key]), key
    assert int(straight["generator_average.updates"]) == 10 - 3  # 10 generator updates, the first 3 copied
    differs = [not torch.equal(straight[f"generator_average.average.{key[len('generator.'):]}"], straight[key])
               for key in plain if key.startswith("generator.") and straight[key].is_floating_point()]
    assert any(differs)  # after the warm-up the average is not the generator


def tiny_gan(**settings) -> GAN:
    return GAN(MLPGenerator(latent_dim=4, hidden=[8], out_shape=(1, 4, 4)),
               MLPDiscriminator(in_shape=(1, 4, 4), hidden=[8]), **settings)


def test_samples_come_from_the_average_when_asked_and_evaluations_score_both():
    model = tiny_gan(ema_decay=0.99, ema_warmup_iterations=0)
    with torch.no_grad():
        for parameter in model.generator_average.average.parameters():
            parameter.add_(1.0)  # the average now differs from the generator
    z = model.sample_latent(5, torch.Generator().manual_seed(0))
    raw = model.decode(z)
    with model.sampler("ema"):
        averaged = model.decode(z)
        assert model.sampler_settings()["weights"].startswith("moving average of the generator's weights")
    torch.testing.assert_close(averaged, model.generator_average.average(z))
    assert not torch.allclose(raw, averaged) and torch.equal(model.decode(z), raw)
    metrics = GenerativeMetrics(suites=[ClassifierMetrics(checkpoint="unused.ckpt")])
    assert metrics.evaluation.variants(model) == ["ema"]
    assert metrics.evaluation.variants(tiny_gan(ema_decay=0.99, sampling_weights="ema")) == ["raw"]
    assert metrics.evaluation.variants(tiny_gan()) == []


@pytest.mark.parametrize("settings, message", [
    ({"ema_decay": 1.5}, "model.ema_decay must be between 0 and 1"),
    ({"ema_decay": 0.99, "ema_warmup_iterations": -1}, "model.ema_warmup_iterations must be 0 or more"),
    ({"sampling_weights": "ema"}, "model.sampling_weights 'ema' needs a moving average: set model.ema_decay"),
])
def test_bad_average_settings_are_one_line(settings, message):
    with pytest.raises(GenlabError, match=message):
        tiny_gan(**settings)


LAGGING = ["--model.init_args.ema_decay=0.999", "--model.init_args.ema_warmup_iterations=0",
           "--model.init_args.generator_optimizer.init_args.lr=0.01"]  # an average far behind a fast generator


def test_sample_grids_show_the_average_beside_the_generator_from_the_same_noise(run_cli, tiny_data, tmp_path):
    import numpy as np
    from PIL import Image

    from genlab.callbacks import SampleGrid
    from genlab.cli import GenlabCLI

    run_cli("fit", *TINY_GAN, *LAGGING, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=2",
            "--trainer.callbacks+=genlab.callbacks.SampleGrid", "--trainer.callbacks.every_n_iterations=5")
    run = tmp_path / "lightning_logs" / "gan_mnist" / "version_0"
    raw = sorted(p.name for p in (run / "samples").glob("iteration_*.png"))
    assert raw == ["iteration_0000005.png", "iteration_0000010.png"]
    assert sorted(p.name for p in (run / "samples" / "ema").glob("*.png")) == raw
    model = GenlabCLI(args=[*TINY_GAN, *LAGGING, f"--data.data_dir={tiny_data}", "--trainer.logger=false"],
                      run=False).model
    model.load_state_dict(load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"])
    grid = SampleGrid(every_n_iterations=5)
    with model.sampler("ema"):
        expected = grid.grid(model)
    saved = torch.from_numpy(np.asarray(Image.open(run / "samples" / "ema" / raw[-1]).convert("L")))
    difference = (saved.int() - (expected[0] * 255).round().int()).abs()
    assert difference.max() <= 1  # the average's grid from this noise (up to the PNG's rounding)
    raw_grid = torch.from_numpy(np.asarray(Image.open(run / "samples" / raw[-1]).convert("L")))
    assert (saved.int() - raw_grid.int()).abs().max() > 10  # not the generator's
