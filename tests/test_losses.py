"""Every adversarial loss against its formula, on fixed tensors, in numbers."""

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.losses import LOSSES, Hinge, LeastSquares, Minimax, Wasserstein, resolve_loss

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-3.0, 0.0, 1.5])


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_minimax_discriminator_is_binary_cross_entropy():
    expected = mean([-math.log(sigmoid(r)) for r in REAL.tolist()]) + mean(
        [-math.log(1 - sigmoid(f)) for f in FAKE.tolist()]
    )
    assert Minimax().discriminator(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_saturating_generator_minimises_log_one_minus_d():
    expected = mean([math.log(1 - sigmoid(f)) for f in FAKE.tolist()])
    assert Minimax(saturating=True).generator(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_non_saturating_generator_minimises_minus_log_d():
    expected = mean([-math.log(sigmoid(f)) for f in FAKE.tolist()])
    assert Minimax(saturating=False).generator(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_minimax_is_stable_for_extreme_logits():
    huge = torch.tensor([200.0, -200.0])
    assert torch.isfinite(Minimax().discriminator(huge, -huge))
    assert Minimax().generator(torch.tensor([-200.0])).item() == pytest.approx(200.0)


def test_least_squares_matches_the_seed_formulas():
    d_expected = 0.5 * mean([(r - 1) ** 2 for r in REAL.tolist()]) + 0.5 * mean([f**2 for f in FAKE.tolist()])
    g_expected = 0.5 * mean([(f - 1) ** 2 for f in FAKE.tolist()])
    assert LeastSquares().discriminator(REAL, FAKE).item() == pytest.approx(d_expected)
    assert LeastSquares().generator(FAKE).item() == pytest.approx(g_expected)
    # the EmojiOne reference's Algorithm 1: the generator loss has no ½
    assert LeastSquares(generator_scale=1.0).generator(FAKE).item() == pytest.approx(2 * g_expected)


def test_wasserstein_critic_and_generator():
    assert Wasserstein().discriminator(REAL, FAKE).item() == pytest.approx(mean(FAKE.tolist()) - mean(REAL.tolist()))
    assert Wasserstein().generator(FAKE).item() == pytest.approx(-mean(FAKE.tolist()))
    estimate = Wasserstein().summaries(REAL, FAKE)["wasserstein_estimate"]
    assert estimate.item() == pytest.approx(mean(REAL.tolist()) - mean(FAKE.tolist()))


def test_hinge():
    expected = mean([max(0.0, 1 - r) for r in REAL.tolist()]) + mean([max(0.0, 1 + f) for f in FAKE.tolist()])
    assert Hinge().discriminator(REAL, FAKE).item() == pytest.approx(expected)
    assert Hinge().generator(FAKE).item() == pytest.approx(-mean(FAKE.tolist()))


def test_summaries_report_probabilities_for_logit_losses_and_scores_otherwise():
    logits = Minimax().summaries(REAL, FAKE)
    assert logits["d/real"].item() == pytest.approx(mean([sigmoid(r) for r in REAL.tolist()]))
    scores = LeastSquares().summaries(REAL, FAKE)
    assert scores["d/fake"].item() == pytest.approx(mean(FAKE.tolist()))


def test_losses_by_name_and_unknown_name():
    assert resolve_loss("least_squares") is LOSSES["least_squares"]
    custom = LeastSquares(generator_scale=1.0)
    assert resolve_loss(custom) is custom
    with pytest.raises(GenlabError, match="unknown model.loss 'wasserstien'.*hinge"):
        resolve_loss("wasserstien")
