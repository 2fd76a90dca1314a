"""Scores describe the model that training alone would have produced: every scoring and picture callback
draws its randomness from its own seeded generators, never from the training stream."""

from pathlib import Path

import pytest
import torch

from tests.helpers import EXPERIMENTS, TINY_CLASSIFIER

COMMON = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]

METRICS = """
trainer:
  callbacks:
    - class_path: genlab.callbacks.SampleGrid
      init_args: {every_n_iterations: 3, num_samples: 16}
    - class_path: genlab.callbacks.LatentInterpolation
      init_args: {num_pairs: 2, num_interpolates: 3, seed: 0}
    - class_path: genlab.callbacks.GenerativeMetrics
      init_args:
        num_samples: 120
        batch_size: 50
        every_n_epochs: 1
        suites:
          - class_path: genlab.metrics.ClassifierMetrics
            init_args: {checkpoint: lightning_logs/classifier_mnist, splits: 2}
"""

SMALL = {
    "dcgan_mnist": ["--model.init_args.generator.init_args.latent_dim=4"],
    # the generator's moving average adds `@ema` scores and grids: still nothing drawn from the training stream
    "dcgan_mnist+ema": ["--model.init_args.generator.init_args.latent_dim=4", "--model.init_args.ema_decay=0.9",
                        "--model.init_args.ema_warmup_iterations=2"],
    # DiffAugment draws from the training stream in every iteration: scoring must not shift those draws
    "dcgan_mnist+augment": ["--model.init_args.generator.init_args.latent_dim=4",
                            "--model.init_args.augment=color,translation,cutout"],
    "gan_mnist": ["--model.init_args.generator.init_args.hidden=[32, 32]",
                  "--model.init_args.discriminator.init_args.hidden=[16]"],
    "vae_mnist": ["--model.init_args.encoder.init_args.hidden=[32]", "--model.init_args.decoder.init_args.hidden=[32]",
                  "--model.init_args.sampling_prior=mixture", "--model.init_args.mixture_components=3"],
}


def _final_state(run: Path) -> dict:
    """Trained weights and optimizer states; the VAE's sampling mixture is fitted when samples are drawn, so it
    exists only in the run that drew samples and is no part of what training produced."""
    from genlab.models.vae import MIXTURE_KEYS

    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    weights = {key: value for key, value in checkpoint["state_dict"].items() if not key.startswith(MIXTURE_KEYS)}
    return {"weights": weights, "optimizers": checkpoint["optimizer_states"]}


def _assert_identical(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("experiment", sorted(SMALL))
def test_a_fit_ends_with_the_same_weights_with_and_without_scoring_and_pictures(experiment, run_cli, tmp_path):
    from tests.helpers import write_tiny_mnist

    data = write_tiny_mnist(tmp_path / "data", train=300, test=120)
    run_cli("fit", *TINY_CLASSIFIER, f"--data.data_dir={data}")
    callbacks = tmp_path / "callbacks.yaml"
    callbacks.write_text(METRICS)
    common = ["--config", str(EXPERIMENTS / f"{experiment.split('+')[0]}.yaml"), *SMALL[experiment], *COMMON,
              f"--data.data_dir={data}", "--data.init_args.batch_size=32", "--data.init_args.val_size=100",
              "--trainer.max_epochs=2"]
    run_cli("fit", *common, "--config", str(callbacks), "--trainer.logger.init_args.name=scored")
    run_cli("fit", *common, "--trainer.callbacks=[]", "--evaluate=false", "--trainer.logger.init_args.name=bare")
    scored, bare = (tmp_path / "lightning_logs" / name / "version_0" for name in ("scored", "bare"))
    assert len((scored / "metrics.jsonl").read_text().splitlines()) == 2  # the scored run really was scored
    assert list((scored / "samples").glob("*.png")) and not (bare / "samples").exists()
    if experiment.endswith("+ema"):  # the average was scored and drawn too
        assert "classifier/is@ema" in (scored / "metrics.jsonl").read_text() and (scored / "samples" / "ema").is_dir()
    _assert_identical(_final_state(scored), _final_state(bare))


def test_toy_plots_leave_the_toy_gan_training_alone(run_cli, tmp_path):
    common = ["--config", str(EXPERIMENTS / "toy_quadratic.yaml"), *COMMON, "--trainer.max_steps=120",
              "--data.init_args.train_size=512", "--data.init_args.val_size=64"]
    run_cli("fit", *common, "--trainer.callbacks.every_n_iterations=20",
            "--trainer.callbacks.record_every_n_iterations=5", "--trainer.callbacks.num_points=64",
            "--trainer.logger.init_args.name=plotted")
    run_cli("fit", *common, "--trainer.callbacks=[]", "--trainer.logger.init_args.name=bare")
    plotted, bare = (tmp_path / "lightning_logs" / name / "version_0" for name in ("plotted", "bare"))
    assert list((plotted / "toy").glob("*.png"))
    _assert_identical(_final_state(plotted), _final_state(bare))
