"""Precision, recall, density and coverage (k-NN manifolds) against torch-fidelity's own code and hand counts.

Each test is built so that one specific slip shows: swapped precision and recall, the point itself counted as
its own first neighbour, a strict ball, density normalised by the real count, coverage from the generated balls,
a blocked distance pass that drops a block, a process without generated samples breaking the gather.
"""

from __future__ import annotations

import pytest
import torch

from genlab.errors import GenlabError
from genlab.metrics import ClassifierMetrics, ManifoldScores
from genlab.metrics.functional import kth_neighbour_distances, manifold_scores, nearest_neighbours


def column(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[:, None]


def shifted_narrow_gaussians(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Real: N(0, I) in 8-d (300); generated: a narrower, shifted cloud (250), inside the real one: precision
    high, recall low, so swapping them cannot pass."""
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(300, 8, generator=generator, dtype=torch.float64)
    fake = torch.randn(250, 8, generator=generator, dtype=torch.float64) * 0.6 + 0.5
    return real, fake


def fed_in_uneven_batches(real: torch.Tensor, fake: torch.Tensor, k: int, chunk: int) -> dict[str, float]:
    metric = ManifoldScores(real.shape[1], k=k, chunk=chunk)
    for part in real.split(71):
        metric.update(part, real=True)
    for part in torch.tensor_split(fake, [3, 4, 130]):
        metric.update(part, real=False)
    return {name: float(value) for name, value in metric.compute().items()}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_and_recall_equal_torch_fidelitys_on_the_same_features(k):
    from torch_fidelity.metric_prc import prc_features_to_metric

    real, fake = shifted_narrow_gaussians()
    ours = fed_in_uneven_batches(real, fake, k, chunk=37)  # blocks of 37: many partial blocks on both sides
    for save_cpu_ram in (False, True):  # torch-fidelity's two code paths; input1 is the generated side
        reference = prc_features_to_metric(fake, real, prc_neighborhood=k, prc_batch_size=64,
                                           save_cpu_ram=save_cpu_ram, verbose=False)
        # torch-fidelity averages in float32: equal counts, equal to float32 rounding
        assert ours["precision"] == pytest.approx(reference["precision"], rel=1e-6, abs=0)
        assert ours["recall"] == pytest.approx(reference["recall"], rel=1e-6, abs=0)
    assert ours["precision"] - ours["recall"] > 0.3  # far apart: swapping them cannot pass
    assert ours == manifold_scores(real, fake, k)  # one block or many: the same numbers


def test_density_and_coverage_of_a_hand_made_point_set_equal_the_hand_counts():
    # 1-D, k = 1. Real 0, 1, 2, 3, 10: k-NN radii 1, 1, 1, 1, 7, balls [-1, 1], [0, 2], [1, 3], [2, 4], [3, 17].
    # Generated 0.5, 1.8, 9, 30 (M = 4 != N = 5): radii 1.3, 1.3, 7.2, 21.
    real, fake = column([0, 1, 2, 3, 10]), column([0.5, 1.8, 9, 30])
    scores = manifold_scores(real, fake, k=1)
    # real balls holding each generated point: 0.5 -> [-1,1], [0,2]; 1.8 -> [0,2], [1,3]; 9 -> [3,17]; 30 -> none
    assert scores["precision"] == 3 / 4
    assert scores["density"] == (2 + 2 + 1 + 0) / (1 * 4)  # 5/4: density is not capped at 1
    # real points whose own ball holds a generated one: 0 (0.5), 1 (0.5, 1.8), 2 (1.8), 10 (9); not 3 (1.2 > 1)
    assert scores["coverage"] == 4 / 5
    # generated balls [-0.8, 1.8], [0.5, 3.1], [1.8, 16.2], [9, 51] hold every real point: the outliers' big balls
    assert scores["recall"] == 1.0


def test_density_counts_k_and_every_ball_and_coverage_uses_the_real_balls_only():
    # 2-D, k = 2. Real: a unit square's corners and a far point.
    real = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1], [6, 6]], dtype=torch.float64)
    # corners: other points at 1, 1, sqrt2, ... -> 2nd nearest at 1; (6, 6): sqrt50, sqrt61, sqrt61 -> sqrt61
    fake = torch.tensor([[0.5, 0.5], [0.5, 0.5], [9, 9], [30, 30]], dtype=torch.float64)
    scores = manifold_scores(real, fake, k=2)
    # (0.5, 0.5) is sqrt(0.5) from each corner (inside 4 balls) and sqrt(60.5) < sqrt(61) from (6, 6): 5 balls, twice
    # (9, 9): sqrt(18) from (6, 6) only; (30, 30): none
    assert scores["density"] == pytest.approx((5 + 5 + 1 + 0) / (2 * 4), rel=1e-15)
    assert scores["precision"] == 3 / 4
    assert scores["coverage"] == 1.0  # every real ball holds a generated point
    # generated radii (k = 2): (0.5, 0.5) twice -> 2nd nearest other is (9, 9) at sqrt(144.5); the duplicate is the
    # first neighbour at 0. Those balls hold every real point.
    assert scores["recall"] == 1.0
    torch.testing.assert_close(kth_neighbour_distances(fake, 1), torch.tensor([0.0, 0.0, 144.5**0.5, 21 * 2**0.5],
                                                                              dtype=torch.float64))


def test_a_point_on_a_balls_surface_is_inside_it_as_in_torch_fidelity():
    from torch_fidelity.metric_prc import prc_features_to_metric

    real, fake = column([0, 1]), column([2, 5])  # real balls [-1, 1], [0, 2]: 2 is on the second one's surface
    scores = manifold_scores(real, fake, k=1)
    reference = prc_features_to_metric(fake, real, prc_neighborhood=1, prc_batch_size=10, save_cpu_ram=False,
                                       verbose=False)
    assert scores["precision"] == reference["precision"] == 0.5
    assert scores["density"] == 0.5 and scores["coverage"] == 0.5


def test_identical_sets_give_full_precision_recall_coverage_and_density_k_plus_one_over_k():
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(200, 5, generator=generator, dtype=torch.float64)
    for k in (1, 4):
        scores = manifold_scores(points, points.clone(), k, chunk=33)
        # each point lies in its own ball and in those of the points it is among the k nearest of: N (k + 1) in all
        assert scores == pytest.approx({"precision": 1.0, "recall": 1.0, "coverage": 1.0, "density": (k + 1) / k})


def test_blocked_distances_equal_one_block():
    generator = torch.Generator().manual_seed(2)
    points, queries = torch.randn(230, 6, generator=generator), torch.randn(101, 6, generator=generator)
    full = torch.cdist(points.double(), points.double())
    for k in (1, 3):
        expected = full.kthvalue(k + 1, dim=1).values
        for chunk in (1, 2, 50, 1000):
            torch.testing.assert_close(kth_neighbour_distances(points, k, chunk), expected, rtol=1e-12, atol=1e-12)
    distances, indices = nearest_neighbours(queries, points, chunk=17)
    cross = torch.cdist(queries.double(), points.double())
    torch.testing.assert_close(distances, cross.min(1).values, rtol=1e-12, atol=1e-12)
    assert torch.equal(indices, cross.argmin(1))


def two_process_gather(other: ManifoldScores, other_first: bool):
    """A stand-in for torchmetrics' all-gather between this metric and `other`, states in the order it asks."""
    states = iter([torch.cat(getattr(other, name)) for name in other._reductions])

    def gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        theirs = next(states)
        return [theirs, tensor] if other_first else [tensor, theirs]

    return gather


def test_a_process_fed_no_generated_batch_takes_part_in_the_gather_and_both_get_the_one_process_numbers():
    real, fake = shifted_narrow_gaussians(seed=3)
    expected = manifold_scores(real, fake, k=3)
    busy, idle = ManifoldScores(8, k=3, keep_real=True), ManifoldScores(8, k=3, keep_real=True)
    busy.update(real[:200], real=True)
    idle.update(real[200:], real=True)
    busy.update(fake, real=False)  # one generated batch: process 1 draws nothing
    for metric in (busy, idle):  # as after an earlier evaluation
        metric.reset()
    busy.update(fake, real=False)
    for metric, other, other_first in ((busy, idle, False), (idle, busy, True)):
        assert all(len(getattr(other, name)) for name in other._reductions)  # a 0 x 8 placeholder at least
        metric.dist_sync_fn = two_process_gather(other, other_first)
        metric.distributed_available_fn = lambda: True
    computed = {name: float(value) for name, value in busy.compute().items()}
    assert computed == pytest.approx(expected, rel=1e-12)
    idle.dist_sync_fn = two_process_gather(busy, other_first=False)
    assert {name: float(value) for name, value in idle.compute().items()} == pytest.approx(expected, rel=1e-12)


def test_too_few_samples_for_k_are_refused_with_the_minimum():
    metric = ManifoldScores(2, k=3)
    metric.update(torch.randn(10, 2), real=True)
    metric.update(torch.randn(3, 2), real=False)
    with pytest.raises(GenlabError, match="need more than 3 samples per side"):
        metric.compute()
    with pytest.raises(GenlabError, match="manifold_k"):
        ClassifierMetrics(manifold_k=0)


def test_the_classifier_suite_refuses_too_few_samples_before_training_and_records_k_and_counts(monkeypatch):
    from tests.helpers import classifier_suite, images_predicted_as

    with pytest.raises(GenlabError, match="manifold_k = 3 need more than 3 images per side.* 3 real"):
        classifier_suite(monkeypatch, 0, num_fake=12, num_real=3, manifold_k=3)
    suite = classifier_suite(monkeypatch, 0, num_fake=12, num_real=10, manifold_k=3)
    real, fake = images_predicted_as([0, 1, 2, 3] * 2 + [0, 1], seed=1), images_predicted_as([2] * 12, seed=0)
    suite.update(real, real=True)
    suite.update(fake, real=False)
    scores = suite.compute().scores
    # the stand-in classifier's features are pixels 5 and 6
    expected = manifold_scores(real.flatten(1)[:, 5:7], fake.flatten(1)[:, 5:7], 3)
    assert {name: scores[f"classifier/{name}"] for name in expected} == pytest.approx(expected, rel=1e-12)
    settings = suite.settings()
    assert settings["manifold_k"] == 3 and settings["manifold_counts"] == {"generated": 12, "real": 10}


def test_the_real_side_radii_are_recomputed_when_the_real_side_changes():
    real, fake = shifted_narrow_gaussians(seed=4)
    metric = ManifoldScores(8, k=3, keep_real=True)
    metric.update(real[:150], real=True)
    metric.update(fake, real=False)
    first = {name: float(value) for name, value in metric.compute().items()}
    assert first == pytest.approx(manifold_scores(real[:150], fake, 3), rel=1e-15)
    metric.reset()
    metric.update(fake, real=False)  # the kept real side, its radii reused
    assert {name: float(value) for name, value in metric.compute().items()} == pytest.approx(first, rel=1e-15)
    metric.keep_real = False
    metric.reset()
    metric.update(real[150:], real=True)
    metric.update(fake, real=False)
    assert {name: float(value) for name, value in metric.compute().items()} == pytest.approx(
        manifold_scores(real[150:], fake, 3), rel=1e-15)


def test_a_process_that_gets_no_batch_of_a_new_real_side_does_not_reuse_the_old_radii():
    real, fake = shifted_narrow_gaussians(seed=5)
    busy, idle = ManifoldScores(8, k=3, keep_real=True), ManifoldScores(8, k=3, keep_real=True)
    busy.update(real[:100], real=True)
    idle.update(real[100:200], real=True)
    idle.update(fake, real=False)
    for metric, other, other_first in ((busy, idle, False), (idle, busy, True)):
        metric.dist_sync_fn = two_process_gather(other, other_first)
        metric.distributed_available_fn = lambda: True
    idle.compute()  # the radii of real[:200] cached on the idle process
    for metric in (busy, idle):  # a new real side (another split): process 1 gets none of it
        metric.keep_real = False
        metric.reset()
    busy.update(real[200:], real=True)
    idle.update(fake, real=False)
    idle.dist_sync_fn = two_process_gather(busy, other_first=True)
    computed = {name: float(value) for name, value in idle.compute().items()}
    assert computed == pytest.approx(manifold_scores(real[200:], fake, 3), rel=1e-12)
