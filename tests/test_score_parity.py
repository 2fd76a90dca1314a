"""Scores against independent references, each built so that one specific evaluation bug makes it fail.

- Inception IS/FID/KID and precision/recall of PNG samples written the way `genlab predict` writes them, against
  torch-fidelity's own `calculate_metrics` on the same folders (different real and fake images: no score is trivially
  0 or 1).
- The Fréchet distance of small, unevenly batched feature sets against NumPy/SciPy (`np.cov`, `sqrtm`), with
  non-commuting covariances and few samples, so a biased (/n) covariance or a commuting shortcut shows.
- `ClassifierMetrics`' label total variation, label accuracy and histograms on hand-counted predictions.
- `generated_batches`: every sample distinct, the same for any process count, the same for the same seed.
- `GaussianMixture.sample`: each component's weight, mean and full covariance come back in the draw.
"""

from __future__ import annotations

import math
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from genlab.metrics import (
    EvaluationPlan,
    FrechetDistance,
    InceptionMetrics,
    random_inception_weights,
)
from tests.helpers import CLASSES, classifier_suite, images_predicted_as

# --- Inception-v3 IS, FID and KID against torch-fidelity's own pipeline, through PNG files ------------------

NUM_IMAGES = 66  # per side: FID on 64-d pool features needs more than 64; Inception: ~0.25 s/image on CPU
IS_SPLITS, KID_SUBSETS, KID_SUBSET_SIZE, PRC_K = 2, 10, 50, 3
# Both pipelines push the same images through the network in the same batches (32, 32, 2): a float32
# convolution's per-image result moves by ~1e-8 with the batch it is computed in, which the comparisons below
# would see (with batches of 40 against torch-fidelity's 64, IS differed by 5e-9 relative).
BATCH = 32
# Random weights give nearly the same p(y|x) for every image (IS 1.00002 on images like these), so a wrong
# softmax axis or a wrong split could hide in the rounding. Scaling the last layer spreads the predictions
# (IS 1.73 here); the unbiased logits IS uses have no bias, so this scale is all that changes them.
FC_SCALE = 50.0


@pytest.fixture(scope="module")
def scaled_inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = random_inception_weights(tmp_path_factory.mktemp("inception") / "weights.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["fc.weight"] = state["fc.weight"] * FC_SCALE
    torch.save(state, path)
    return path


def digit_like_strokes(n: int, seed: int) -> torch.Tensor:
    """'Real' images in [-1, 1]: a bright horizontal and a grey vertical bar at random places, with noise."""
    generator = torch.Generator().manual_seed(seed)
    images = -torch.ones(n, 1, 28, 28)
    for image in images:
        row, column = torch.randint(4, 24, (2,), generator=generator).tolist()
        image[0, row - 2 : row + 2, 4:24] = 1.0
        image[0, 4:24, column - 2 : column + 2] = 0.5
    return (images + 0.1 * torch.randn(n, 1, 28, 28, generator=generator)).clamp(-1, 1)


def mixed_patterns(n: int, seed: int) -> torch.Tensor:
    """'Generated' images in [-1, 1], four kinds in turn: flat grey, a ramp, a checkerboard, noise."""
    generator = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    images = []
    for index in range(n):
        level = float(torch.rand((), generator=generator)) * 1.6 - 0.8
        kind = index % 4
        if kind == 0:
            image = torch.full((28, 28), level)
        elif kind == 1:
            angle = float(torch.rand((), generator=generator)) * math.pi
            image = level * (xx * math.cos(angle) + yy * math.sin(angle))
        elif kind == 2:
            frequency = 2 + 10 * float(torch.rand((), generator=generator))
            image = torch.sign(torch.sin(frequency * xx) * torch.sin(frequency * yy)) * abs(level)
        else:
            image = torch.randn(28, 28, generator=generator) * abs(level)
        images.append(image.clamp(-1, 1))
    return torch.stack(images)[:, None]


def write_like_genlab_predict(images: torch.Tensor, root: Path) -> Path:
    """The PNG files `genlab predict` writes: `WriteSamples` itself, driven with a stand-in trainer (no
    logger, so the run folder is `default_root_dir`; not global zero, so no grid.png lands among them)."""
    from genlab.callbacks.predictions import WriteSamples

    trainer = types.SimpleNamespace(loggers=[], default_root_dir=str(root), global_rank=0,
                                    is_global_zero=False)
    prediction = {"items": torch.arange(len(images)), "images": images}
    WriteSamples(folder="samples").write_on_batch_end(trainer, None, prediction, None, None, 0)
    folder = root / "samples"
    names = sorted(path.name for path in folder.iterdir())
    assert names == [f"{item:06d}.png" for item in range(len(images))]
    return folder


def read_png_folder(folder: Path) -> torch.Tensor:
    """The PNGs back as N x 1 x H x W floats in [-1, 1], in file-name order (torch-fidelity's order), read as
    torch-fidelity reads them (PIL, RGB) and mapped from bytes as genlab's data modules map them."""
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob("*.png"))])
    assert (pixels == pixels[..., :1]).all()  # gray saved as three equal channels
    return torch.from_numpy(pixels[..., 0].copy()).float().div(127.5).sub(1)[:, None]


@pytest.fixture(scope="module")
def inception_scores(scaled_inception_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """(torch-fidelity's scores, genlab's scores) for the same two PNG folders."""
    import torch_fidelity

    root = tmp_path_factory.mktemp("pngs")
    real_dir = write_like_genlab_predict(digit_like_strokes(NUM_IMAGES, seed=1), root / "real")
    fake_dir = write_like_genlab_predict(mixed_patterns(NUM_IMAGES, seed=2), root / "fake")

    common = {
        "feature_extractor": "inception-v3-compat", "feature_extractor_weights_path": str(scaled_inception_weights),
        "samples_find_deep": False, "cuda": False, "verbose": False, "cache": False, "batch_size": BATCH,
        "save_cpu_ram": True,  # no DataLoader worker processes
    }
    # Two calls instead of one with isc, fid and kid together: the FID/KID call stops the network at the 64-d
    # pool layer and so costs a tenth of a full pass. Each metric still goes through torch-fidelity's own code
    # path (input1 = generated, as genlab hands torch-fidelity's KID code the generated features first).
    reference = torch_fidelity.calculate_metrics(input1=str(fake_dir), isc=True, isc_splits=IS_SPLITS,
                                                 **common)
    reference |= torch_fidelity.calculate_metrics(
        input1=str(fake_dir), input2=str(real_dir), fid=True, kid=True, prc=True, feature_layer_fid="64",
        feature_layer_kid="64", feature_layer_prc="64", prc_neighborhood=PRC_K, kid_subsets=KID_SUBSETS,
        kid_subset_size=KID_SUBSET_SIZE, **common,
    )

    suite = InceptionMetrics(weights_path=str(scaled_inception_weights), download=False, is_splits=IS_SPLITS,
                             fid_features=64, kid_subsets=KID_SUBSETS, kid_subset_size=KID_SUBSET_SIZE,
                             allow_unofficial_weights=True, manifold_k=PRC_K)
    with pytest.MonkeyPatch.context() as patch:
        # Only the sample-count policy is bypassed (IS wants 1008 images per split; its own tests cover it):
        # everything else in prepare() runs as in a real evaluation.
        patch.setattr(InceptionMetrics, "_check_counts", lambda self, plan: None)
        suite.prepare(EvaluationPlan((1, 28, 28), "PNGFolder", 0, 0, NUM_IMAGES, NUM_IMAGES, "val"))
    real, fake = read_png_folder(real_dir), read_png_folder(fake_dir)
    for chunk in real.split(BATCH):  # several updates per side, as GenerativeMetrics feeds them
        suite.update(chunk, real=True)
    for chunk in fake.split(BATCH):
        suite.update(chunk, real=False)
    return reference, suite.compute().scores


@pytest.mark.slow
def test_inception_is_of_png_samples_equals_torch_fidelity_and_is_well_above_one(inception_scores):
    reference, scores = inception_scores
    # the same logits, the same seeded split permutation: equal (bit for bit on the machine it was written on)
    assert scores["inception/is"] == pytest.approx(reference["inception_score_mean"], rel=1e-12)
    assert scores["inception/is_std"] == pytest.approx(reference["inception_score_std"], rel=1e-9)
    assert scores["inception/is"] > 1.2  # far from the 1 of identical predictions: a wrong axis cannot hide
    assert scores["inception/is_std"] > 1e-3  # the two splits differ: the split cut is checked too


@pytest.mark.slow
def test_inception_fid_of_png_samples_equals_torch_fidelity(inception_scores):
    reference, scores = inception_scores
    # The one gap: torch-fidelity takes the feature means in float32 (np.mean of its float32 features; np.cov
    # is float64) where genlab sums in float64. Here the two FIDs differ by 1.0e-7 relative; torch-fidelity's
    # own FID code on genlab's features reproduces its number exactly, and on them cast to float64 agrees
    # with genlab to 1e-11.
    assert reference["frechet_inception_distance"] > 1.0
    assert scores["inception/fid"] == pytest.approx(reference["frechet_inception_distance"], rel=1e-6)


@pytest.mark.slow
def test_inception_kid_of_png_samples_equals_torch_fidelity(inception_scores):
    reference, scores = inception_scores
    # the same float32 features through torch-fidelity's own KID code with the same subset draws: equal
    assert reference["kernel_inception_distance_mean"] > 10 * reference["kernel_inception_distance_std"]
    assert scores["inception/kid"] == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-9)
    assert scores["inception/kid_std"] == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-9)


@pytest.mark.slow
def test_inception_precision_and_recall_of_png_samples_equal_torch_fidelity(inception_scores):
    reference, scores = inception_scores
    # the same 64-d pool features through torch-fidelity's k-NN code (input1 = generated): the same counts;
    # torch-fidelity averages in float32
    assert scores["inception/precision"] == pytest.approx(reference["precision"], rel=1e-6)
    assert scores["inception/recall"] == pytest.approx(reference["recall"], rel=1e-6)
    assert scores["inception/precision"] != pytest.approx(scores["inception/recall"], abs=0.05)  # a swap shows


# --- Fréchet distance against NumPy/SciPy -------------------------------------------------------------------


def anisotropic_rotated_gaussian(n: int, scales: list[float], shift: float,
                                 rng: np.random.Generator) -> np.ndarray:
    rotation = np.linalg.qr(rng.standard_normal((len(scales), len(scales))))[0]
    return (rng.standard_normal((n, len(scales))) * scales) @ rotation.T + shift


def scipy_frechet_distance(x: np.ndarray, y: np.ndarray, ddof: int = 1) -> float:
    mu_x, mu_y = x.mean(0), y.mean(0)
    sigma_x, sigma_y = np.cov(x, rowvar=False, ddof=ddof), np.cov(y, rowvar=False, ddof=ddof)
    covmean = scipy.linalg.sqrtm(sigma_x @ sigma_y)
    return float((mu_x - mu_y) @ (mu_x - mu_y) + np.trace(sigma_x) + np.trace(sigma_y)
                 - 2 * np.trace(covmean).real)


def test_fd_of_small_uneven_batches_with_non_commuting_covariances_equals_scipy_sqrtm_of_unbiased_covs():
    rng = np.random.default_rng(7)
    real = anisotropic_rotated_gaussian(40, [3.0, 1.0, 0.5, 0.2, 2.0], 1.0, rng)
    fake = anisotropic_rotated_gaussian(55, [0.3, 2.0, 1.0, 4.0, 0.1], -0.5, rng)
    sigma_real, sigma_fake = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    # non-commuting: tr(sqrt(S1) sqrt(S2)) in place of tr(sqrt(S1 S2)) moves this distance by 9%
    assert not np.allclose(sigma_real @ sigma_fake, sigma_fake @ sigma_real, atol=1e-2)
    expected = scipy_frechet_distance(fake, real)
    # the test sees a biased (/n) covariance: with 40 and 55 samples it moves the distance by 0.9%
    assert abs(scipy_frechet_distance(fake, real, ddof=0) / expected - 1) > 1e-3

    metric = FrechetDistance(num_features=5)
    for chunk in np.split(real, [7, 20]):  # 7, 13, 20
        metric.update(torch.from_numpy(chunk), real=True)
    for chunk in np.split(fake, [11, 12, 41]):  # 11, 1, 29, 14
        metric.update(torch.from_numpy(chunk), real=False)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-8)


# --- classifier label scores on hand-counted predictions ----------------------------------------------------

def test_label_tv_and_label_accuracy_of_a_conditional_generator_equal_the_hand_counts(monkeypatch):
    # Counts chosen so that the slips a TV can suffer give other numbers: 12 generated and 10 real images (one
    # normaliser for both sides is wrong), two classes over- and two under-represented (a pointwise max is
    # wrong).
    fake_predicted = [0, 1, 0, 3, 0, 1, 2, 0, 0, 1, 2, 1]  # classes 0..3: 5, 4, 2, 1 of 12
    requested = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]  # index % 4, as generated_batches asks
    # predicted == requested at items 0, 1, 3, 4, 5, 6, 8, 9, 10: 9 of 12
    real_predicted = [3, 2, 3, 1, 3, 2, 0, 3, 2, 1]  # 1, 2, 3, 4 of 10
    real_labels = [0, 0, 1, 1, 2, 2, 3, 3, 0, 1]  # the data's labels: never counted as requested ones
    suite = classifier_suite(monkeypatch, CLASSES, len(fake_predicted), len(real_predicted))
    fake, real = images_predicted_as(fake_predicted, seed=0), images_predicted_as(real_predicted, seed=1)
    for start, stop in ((0, 3), (3, 10)):
        suite.update(real[start:stop], real=True, labels=torch.tensor(real_labels[start:stop]))
    for start, stop in ((0, 5), (5, 6), (6, 12)):
        suite.update(fake[start:stop], real=False, labels=torch.tensor(requested[start:stop]))
    result = suite.compute()

    # TV = 1/2 (|5/12 - 1/10| + |4/12 - 2/10| + |2/12 - 3/10| + |1/12 - 4/10|)
    #    = 1/2 (38 + 16 + 16 + 38) / 120 = 9/20
    generated, real_counts = [5, 4, 2, 1], [1, 2, 3, 4]
    expected_tv = Fraction(1, 2) * sum(abs(Fraction(g, 12) - Fraction(r, 10))
                                       for g, r in zip(generated, real_counts))
    assert expected_tv == Fraction(9, 20)
    assert result.scores["classifier/label_tv"] == pytest.approx(0.45, rel=1e-15)
    # rel 1e-6, not exact: genlab divides two integer tensors, which torch does in float32
    assert result.scores["classifier/label_accuracy"] == 9 / 12
    histogram = result.extras["label_histogram"]
    assert histogram["generated"] == generated and histogram["real"] == real_counts
    # rows: requested 0 (items 0, 4, 8), 1 (1, 5, 9), 2 (2, 6, 10), 3 (3, 7, 11); columns: predicted
    assert histogram["requested_vs_predicted"] == [[3, 0, 0, 0], [0, 3, 0, 0], [1, 0, 2, 0], [1, 1, 0, 1]]
    per_class = result.extras["classifier/per_class"]
    assert per_class["label_accuracy"] == pytest.approx([1, 1, 2 / 3, 1 / 3])
    assert result.scores["classifier/label_accuracy_worst_class"] == pytest.approx(1 / 3)
    # per-class Fréchet distance on the 2 stand-in features, against np.cov and scipy's sqrtm: classes 0 and 1
    # have 3 real and 3 generated images (more than 2 features), classes 2 and 3 only 2 real ones: NaN
    features = {side: images.flatten(1)[:, 5:7].double().numpy() for side, images in (("fake", fake),
                                                                                          ("real", real))}
    expected = []
    for c in (0, 1):
        f = features["fake"][[i for i, r in enumerate(requested) if r == c]]
        r = features["real"][[i for i, label in enumerate(real_labels) if label == c]]
        sf, sr = np.cov(f, rowvar=False), np.cov(r, rowvar=False)
        expected.append(((f.mean(0) - r.mean(0)) ** 2).sum() + np.trace(sf + sr - 2 * scipy.linalg.sqrtm(sf @ sr).real))
    assert per_class["fd"][:2] == pytest.approx(expected, rel=1e-9)
    assert np.isnan(per_class["fd"][2:]).all()
    assert result.scores["classifier/fd_worst_class"] == pytest.approx(max(expected), rel=1e-9)


def test_label_tv_of_an_unconditional_generator_collapsed_on_one_class_equals_the_hand_count(monkeypatch):
    suite = classifier_suite(monkeypatch, 0, 6, 10)
    suite.update(images_predicted_as([3, 2, 3, 1, 3, 2, 0, 3, 2, 1], seed=1), real=True)
    suite.update(images_predicted_as([2] * 6, seed=0), real=False, labels=None)
    result = suite.compute()
    # TV = 1/2 (|0 - 1/10| + |0 - 2/10| + |1 - 3/10| + |0 - 4/10|) = 7/10
    assert result.scores["classifier/label_tv"] == pytest.approx(0.7, rel=1e-15)
    assert "classifier/label_accuracy" not in result.scores
    assert result.extras["label_histogram"]["requested_vs_predicted"] is None
    assert result.scores["classifier/is"] == pytest.approx(1.0, rel=1e-12)  # identical predictions


# --- the seeded samples every evaluation draws --------------------------------------------------------------


def tiny_gan(num_classes: int = 0):
    from genlab.models import GAN
    from genlab.nets import MLPDiscriminator, MLPGenerator

    with torch.random.fork_rng():  # the same weights every time, the global generator left alone
        torch.manual_seed(0)
        generator = MLPGenerator(latent_dim=8, hidden=[16], out_shape=[1, 4, 4], num_classes=num_classes)
        return GAN(generator, MLPDiscriminator(in_shape=[1, 4, 4], hidden=[8], num_classes=num_classes))


def draw(model, count: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
    from genlab.evaluation import generated_batches

    batches = list(generated_batches(model, count, batch_size, seed, rank, world_size))
    images = torch.cat([images for images, _ in batches]) if batches else torch.zeros(0, 1, 4, 4)
    labels = [labels for _, labels in batches]
    return images, (torch.cat(labels) if batches and labels[0] is not None else None)


def test_generated_batches_are_distinct_samples_the_same_for_any_process_count_and_for_the_same_seed():
    model = tiny_gan()
    count, batch_size, seed = 23, 5, 11  # 5 batches, the last one short
    images, labels = draw(model, count, batch_size, seed)
    assert images.shape == (count, 1, 4, 4) and labels is None
    flat = images.flatten(1)
    distinct_rows = torch.unique(flat, dim=0)
    assert len(distinct_rows) == count, "some generated samples repeat: batches share their noise"
    # batch b is the model's sample from a generator seeded seed + b (the record's "noise_batches" says so)
    for batch in range(5):
        start, stop = batch * batch_size, min(count, (batch + 1) * batch_size)
        expected = model.sample(stop - start, generator=torch.Generator().manual_seed(seed + batch))
        torch.testing.assert_close(images[start:stop], expected, rtol=0, atol=0)
    for world_size in (2, 3, 7):  # 7 processes for 5 batches: two of them draw nothing
        shares = [draw(model, count, batch_size, seed, rank, world_size)[0] for rank in range(world_size)]
        torch.testing.assert_close(torch.cat(shares), images, rtol=0, atol=0,
                                   msg=f"{world_size} processes draw other samples than one")
    torch.testing.assert_close(draw(model, count, batch_size, seed)[0], images, rtol=0, atol=0)
    assert not torch.equal(draw(model, count, batch_size, seed + 100)[0], images)


def test_generated_batches_of_a_conditional_generator_request_balanced_labels_by_global_index():
    model = tiny_gan(num_classes=3)
    count, batch_size = 14, 4
    images, labels = draw(model, count, batch_size, seed=0)
    assert labels.tolist() == [index % 3 for index in range(count)]
    assert len(torch.unique(images.flatten(1), dim=0)) == count
    shares = [draw(model, count, batch_size, 0, rank, 2) for rank in range(2)]
    assert torch.cat([share_labels for _, share_labels in shares]).tolist() == labels.tolist()
    torch.testing.assert_close(torch.cat([share_images for share_images, _ in shares]), images, rtol=0,
                               atol=0)


# --- the fitted mixture prior's samples ---------------------------------------------------------------------


def test_mixture_samples_reproduce_each_components_weight_mean_and_full_covariance():
    from genlab.priors import GaussianMixture

    weights = torch.tensor([0.5, 0.3, 0.2])
    means = torch.tensor([[-20.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 25.0, 10.0]])
    covariances = torch.tensor([
        [[4.0, 1.8, 0.5], [1.8, 1.0, 0.2], [0.5, 0.2, 2.0]],
        [[1.0, -0.7, 0.0], [-0.7, 3.0, 1.2], [0.0, 1.2, 1.5]],
        [[2.5, 0.0, -1.4], [0.0, 0.5, 0.3], [-1.4, 0.3, 1.2]],
    ])
    trils = torch.linalg.cholesky(covariances)
    # the test can tell L Lᵀ from Lᵀ L, and the components apart from one shared covariance
    assert all((t.T @ t - c).abs().max() > 0.5 for t, c in zip(trils, covariances))
    mixture = GaussianMixture(3, 3)
    mixture.weights.copy_(weights)
    mixture.means.copy_(means)
    mixture.scale_trils.copy_(trils)
    mixture.fitted.fill_(True)

    n = 100_000
    points = mixture.sample(n, torch.Generator().manual_seed(0)).double()
    assert points.shape == (n, 3)
    nearest = torch.cdist(points, means.double()).argmin(1)  # means > 15 standard deviations apart
    for k in range(3):
        own = points[nearest == k]
        share = len(own) / n
        # standard errors at most: weight sqrt(w(1-w)/n) = 0.0016, mean 0.015, covariance entry 0.025
        assert share == pytest.approx(float(weights[k]), abs=0.01), f"component {k} weight"
        torch.testing.assert_close(own.mean(0), means[k].double(), atol=0.08, rtol=0,
                                   msg=f"component {k} mean")
        empirical = torch.from_numpy(np.cov(own.numpy(), rowvar=False))
        torch.testing.assert_close(empirical, covariances[k].double(), atol=0.15, rtol=0,
                                   msg=lambda m, k=k: f"component {k} covariance: {m}")
