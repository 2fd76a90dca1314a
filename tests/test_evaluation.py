"""`genlab.evaluation.Evaluation` without a trainer, and a score of one's own added with one class and one line of
registration: the numbers against independent numpy computations on the same samples."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import Tensor

from genlab.data.base import Split, Splits, TensorDataModule
from genlab.errors import GenlabError
from genlab.evaluation import Evaluation, generated_batches
from genlab.metrics import FEATURE_SCORES, ClassifierMetrics, FeatureScore, register_feature_score
from genlab.metrics.classifier_checkpoint import LoadedClassifier
from genlab.models.gan import GAN
from genlab.nets.mlp import MLPDiscriminator, MLPGenerator
from tests.helpers import LabelReadingNet, images_predicted_as


class FourByFour(TensorDataModule):
    """120 train, 60 val and 60 test images the stand-in classifier reads."""

    data_shape, num_classes = (1, 4, 4), 4

    def load_splits(self) -> Splits:
        def split(count: int, seed: int) -> Split:
            labels = torch.arange(count) % 4
            return Split(images_predicted_as(labels.tolist(), seed), labels)

        return Splits(split(120, 1), split(60, 2), split(60, 3))


class AnyImageReader(LabelReadingNet):
    """The stand-in classifier, also for generated images (a negative first pixel reads as class 0)."""

    def logits_and_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        readable = images.clone()
        readable[:, 0, 0, 0] = images[:, 0, 0, 0].clamp(0, 0.75)
        return super().logits_and_features(readable)


@pytest.fixture()
def registry() -> Iterator[None]:
    """Scores registered by a test are forgotten after it."""
    saved = dict(FEATURE_SCORES)
    yield
    FEATURE_SCORES.clear()
    FEATURE_SCORES.update(saved)


def stand_in_suite(monkeypatch: pytest.MonkeyPatch, **settings) -> ClassifierMetrics:
    loaded = LoadedClassifier(AnyImageReader(), "stand-in.ckpt", "0" * 12, None, None)
    monkeypatch.setattr("genlab.metrics.classifier.load_classifier", lambda checkpoint: loaded)
    return ClassifierMetrics(checkpoint="unused", splits=1, **settings)


def tiny_gan() -> GAN:
    torch.manual_seed(0)
    return GAN(MLPGenerator(latent_dim=4, hidden=[8], out_shape=[1, 4, 4]), MLPDiscriminator(in_shape=[1, 4, 4],
                                                                                               hidden=[8]))


def numpy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of Gaussians fitted to the rows of a and b, with scipy's matrix square root."""
    mean = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(mean @ mean + np.trace(sa + sb - 2 * scipy.linalg.sqrtm(sa @ sb).real))


def test_an_evaluation_scores_a_model_and_a_data_module_with_no_trainer(monkeypatch):
    data, model = FourByFour(), tiny_gan()
    evaluation = Evaluation([stand_in_suite(monkeypatch)], num_samples=40, batch_size=8, seed=3)
    evaluation.prepare(data, model, "val")
    record = evaluation.run(data, model, "val")
    with torch.no_grad():
        fakes = torch.cat([images for images, _ in generated_batches(model, 40, 8, seed=3)])
    features = lambda images: images.flatten(1)[:, 5:7].double().numpy()
    expected = numpy_frechet(features(fakes), features(data.split("val").samples[:40]))
    assert record["scores"]["classifier/fd"] == pytest.approx(expected, rel=1e-9)
    assert record["num_fake"] == 40 and record["num_real"] == 40 and record["real_split"] == "val"
    assert record["real_values"]["split"] == "train" and record["sampling"]["seed"] == 3
    assert evaluation.run(data, model, "val")["scores"] == record["scores"]  # the real side kept, same samples


class MaxMeanGap(FeatureScore):
    """The largest per-feature gap between the real and generated means: a score of one's own."""

    description = "max |mean(real) - mean(generated)| over features"
    real_states = ("real_sum", "real_count")

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, features: Tensor, real: bool) -> None:
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + features.double().sum(0))
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + len(features))

    def compute(self) -> Tensor:
        return (self.real_sum / self.real_count - self.fake_sum / self.fake_count).abs().max()


def test_a_score_of_ones_own_is_one_class_and_one_line_of_registration(monkeypatch, registry):
    register_feature_score("max_mean_gap", MaxMeanGap)  # the one line
    data, model = FourByFour(), tiny_gan()
    evaluation = Evaluation([stand_in_suite(monkeypatch, scores=["max_mean_gap", "mean_distance"])], num_samples=40,
                            batch_size=8)
    evaluation.prepare(data, model, "val")
    first = evaluation.run(data, model, "val")
    second = evaluation.run(data, model, "val")  # the real side is kept (keep_real), the generated one redrawn
    with torch.no_grad():
        fakes = torch.cat([images for images, _ in generated_batches(model, 40, 8, seed=0)])
    fake, real = (images.flatten(1)[:, 5:7].double().numpy() for images in (fakes, data.split("val").samples[:40]))
    gap = real.mean(0) - fake.mean(0)
    for record in (first, second):
        assert record["scores"]["classifier/max_mean_gap"] == pytest.approx(np.abs(gap).max(), rel=1e-12)
        assert record["scores"]["classifier/mean_distance"] == pytest.approx(gap @ gap, rel=1e-12)
    assert record["settings"]["classifier"]["feature_scores"]["max_mean_gap"] == MaxMeanGap.description


def test_an_unknown_or_starved_feature_score_is_refused_before_anything_runs(monkeypatch, registry):
    data, model = FourByFour(), tiny_gan()
    with pytest.raises(GenlabError, match=r"\['nope'\] are not registered feature scores; known: .*mean_distance"):
        Evaluation([stand_in_suite(monkeypatch, scores=["nope"])], num_samples=40).prepare(data, model, "val")
    monkeypatch.setattr(MaxMeanGap, "minimum_per_side", 50)
    register_feature_score("max_mean_gap", MaxMeanGap)
    with pytest.raises(GenlabError, match="classifier/max_mean_gap needs at least 50 images per side"):
        Evaluation([stand_in_suite(monkeypatch, scores=["max_mean_gap"])], num_samples=40).prepare(data, model, "val")
    with pytest.raises(GenlabError, match="plain word"):
        register_feature_score("classifier/x", MaxMeanGap)


def test_a_yaml_names_a_score_of_ones_own_by_the_module_that_registers_it(monkeypatch, tmp_path, registry):
    (tmp_path / "my_scores.py").write_text(
        "from genlab.metrics import MeanDistance, register_feature_score\n"
        "class Shifted(MeanDistance):\n    description = 'mean distance, by a module of my own'\n"
        "register_feature_score('shifted', Shifted)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_scores", raising=False)  # imported afresh, and forgotten after the test
    data, model = FourByFour(), tiny_gan()
    evaluation = Evaluation([stand_in_suite(monkeypatch, scores=["my_scores:shifted", "mean_distance"])],
                            num_samples=40, batch_size=8)
    evaluation.prepare(data, model, "val")
    record = evaluation.run(data, model, "val")
    assert record["scores"]["classifier/shifted"] == record["scores"]["classifier/mean_distance"]
    assert record["settings"]["classifier"]["feature_scores"]["shifted"] == "mean distance, by a module of my own"
    with pytest.raises(GenlabError, match="score 'nowhere:x': cannot import nowhere"):
        Evaluation([stand_in_suite(monkeypatch, scores=["nowhere:x"])], num_samples=40).prepare(data, model, "val")
