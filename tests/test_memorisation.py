"""The memorisation score: held-out real images as "samples" score about 1, training images (copies) far below,
in pixel and feature space; the closest-pairs figure shows copies first; the callback through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from genlab.callbacks import Memorisation
from genlab.callbacks.run_files import to_unit_range
from genlab.errors import GenlabError
from genlab.metrics.classifier_checkpoint import LoadedClassifier
from genlab.metrics.memorisation import median
from tests.helpers import SCORED_TINY_GAN, TINY_CLASSIFIER


def clustered_images(n: int, seed: int) -> torch.Tensor:
    """1x8x8 images in [-1, 1] around 10 fixed prototypes (the same for every seed), with per-image noise."""
    prototypes = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(123)) * 1.6 - 0.8
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(0, 10, (n,), generator=generator)
    return (prototypes[which] + 0.25 * torch.randn(n, 1, 8, 8, generator=generator)).clamp(-1, 1)


class ProjectionNet(nn.Module):
    """A stand-in classifier: 12 features, a fixed random projection of the pixels through a tanh."""

    in_shape, num_classes, feature_dim = (1, 8, 8), 10, 12

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(64, 12, generator=torch.Generator().manual_seed(7)) / 8

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.tanh(images.flatten(1) @ self.weight)
        return features[:, :10], features


def callback_with_features() -> Memorisation:
    callback = Memorisation(batch_size=64)
    callback.classifier = LoadedClassifier(ProjectionNet(), Path("stand-in.ckpt"), "0" * 12, None, None)
    return callback


def test_the_ratio_is_about_one_for_held_out_images_and_far_below_one_for_training_images():
    train, held_out, other_held_out = clustered_images(800, seed=0), clustered_images(300, 1), clustered_images(300, 2)
    callback = callback_with_features()
    new_images, _ = callback.score(other_held_out, train, held_out)
    copies, _ = callback.score(train[:300], train, held_out)
    near_copies, _ = callback.score(train[:300] + 0.02 * torch.randn(300, 1, 8, 8, generator=torch.Generator()
                                                                     .manual_seed(3)), train, held_out)
    for space in ("pixel", "feature"):
        assert new_images[f"memorisation/{space}_ratio"] == pytest.approx(1.0, abs=0.1), space
        assert copies[f"memorisation/{space}_ratio"] == 0.0 and copies[f"memorisation/{space}_min"] == 0.0
        assert near_copies[f"memorisation/{space}_ratio"] < 0.2, space
        # the held-out reference is the same in every call, and far from 0
        assert new_images[f"memorisation/{space}_held_out_median"] == copies[f"memorisation/{space}_held_out_median"]
        assert copies[f"memorisation/{space}_held_out_median"] > 0.1


def test_feature_distances_are_measured_between_the_classifiers_features_not_the_pixels():
    """Against distances computed here from the stand-in's features by brute force: a callback that measured pixels
    (or the logits) under the "feature" name would fail."""
    train, held_out, samples = clustered_images(50, seed=0), clustered_images(20, 1), clustered_images(30, 2)
    scores, nearest = callback_with_features().score(samples, train, held_out)
    net = ProjectionNet()

    def nearest_distances(queries: torch.Tensor) -> torch.Tensor:
        a, b = net.logits_and_features(queries)[1].double(), net.logits_and_features(train)[1].double()
        return torch.cdist(a, b).min(dim=1).values

    expected_median = nearest_distances(samples).quantile(0.5).item()
    assert scores["memorisation/feature_median"] == pytest.approx(expected_median, rel=1e-6)
    assert scores["memorisation/feature_held_out_median"] == pytest.approx(
        nearest_distances(held_out).quantile(0.5).item(), rel=1e-6)
    torch.testing.assert_close(nearest["feature"].distances, nearest_distances(samples), rtol=1e-6, atol=1e-9)
    assert scores["memorisation/pixel_median"] != pytest.approx(expected_median, rel=1e-2)


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two():
    assert median(torch.tensor([4.0, 1.0, 3.0, 2.0])) == 2.5 and median(torch.tensor([3.0, 1.0, 2.0])) == 2.0


def test_the_closest_pairs_figure_shows_copies_first_above_the_training_images_they_copy():
    train = clustered_images(200, seed=0)
    samples = torch.cat([clustered_images(20, seed=5), train[[17]], train[[42]] + 0.01])
    callback = Memorisation(num_pairs=4)
    _, nearest = callback.score(samples, train, clustered_images(50, seed=6))
    figure = callback.closest_pairs(samples, train, nearest["pixel"])
    assert figure.shape == (3, 2 + 2 * (8 + 2), 2 + 4 * (8 + 2))  # 2 rows of 4 tiles of 8 px, padding 2
    tile = lambda row, column: figure[0, 2 + row * 10 : 10 + row * 10, 2 + column * 10 : 10 + column * 10]
    torch.testing.assert_close(tile(0, 0), to_unit_range(train[17])[0])  # the exact copy first, on top
    torch.testing.assert_close(tile(1, 0), to_unit_range(train[17])[0])  # its training image below it
    torch.testing.assert_close(tile(1, 1), to_unit_range(train[42])[0])  # then the near copy's


def test_memorisation_refuses_settings_that_cannot_work():
    with pytest.raises(GenlabError, match="num_samples"):
        Memorisation(num_samples=0)


MEMORISATION_YAML = """
trainer:
  callbacks:
    - class_path: genlab.callbacks.Memorisation
      init_args: {num_samples: 60, batch_size: 25, classifier: lightning_logs/classifier_mnist}
"""


def test_memorisation_through_the_cli_writes_records_figures_and_tensorboard_images(run_cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.helpers import write_tiny_mnist

    data = write_tiny_mnist(tmp_path / "data", train=300, test=80)
    run_cli("fit", *TINY_CLASSIFIER, f"--data.data_dir={data}")
    config = tmp_path / "memorisation.yaml"
    config.write_text(MEMORISATION_YAML)
    run_cli("fit", *SCORED_TINY_GAN, "--config", str(config), f"--data.data_dir={data}", "--trainer.max_epochs=1")
    run = tmp_path / "lightning_logs" / "gan_mnist" / "version_0"
    records = [json.loads(line) for line in (run / "memorisation.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["stage"] == "fit" and records[0]["iteration"] == 7  # 200 images / 32
    scores, settings = records[0]["scores"], records[0]["settings"]
    for space in ("pixel", "feature"):
        assert scores[f"memorisation/{space}_ratio"] == pytest.approx(
            scores[f"memorisation/{space}_median"] / scores[f"memorisation/{space}_held_out_median"])
        assert (run / "memorisation" / f"closest_pairs_{space}-fit-iteration_0000007.png").is_file()
    assert settings["held_out_split"] == "val" and settings["num_held_out"] == 60 and settings["num_train"] == 200
    assert settings["classifier_sha256"] and settings["num_samples"] == 60
    assert records[0]["sampler"].items() >= {"latent_dim": 10, "noise": "U(-1, 1)"}.items()  # the model's own words
    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    assert "memorisation/closest_pairs_pixel/fit" in events.Tags()["images"]
    assert "memorisation/pixel_ratio" in events.Tags()["scalars"]

    run_cli("test", *SCORED_TINY_GAN, "--config", str(config), f"--data.data_dir={data}", "--ckpt_path=last")
    test_run = max((tmp_path / "lightning_logs" / "gan_mnist").glob("version_*"))
    test_record = json.loads((test_run / "memorisation.jsonl").read_text().splitlines()[-1])
    assert test_record["stage"] == "test" and test_record["iteration"] == 7  # the checkpoint's weights
    assert test_record["scores"] == pytest.approx(scores, rel=1e-9)  # the same generator, the same seeded samples
