"""Per-pixel likelihoods of a VAE decoder (stateless objects, chosen by name or class_path) and the
closed-form KL term.

Decoders output logits η; pixel intensities x live in [0, 1]. With λ = sigmoid(η):
- Bernoulli: -log p(x) = BCE(η, x), the usual (if, for grey pixels, improper) choice;
- continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019): p(x) = C(λ) λ^x (1-λ)^(1-x), a proper density on
  [0, 1]. In logits C(λ) = 2 artanh(1-2λ)/(1-2λ) becomes η / tanh(η/2), which needs no cancellation-prone
  1 - 2λ; only η = 0 (λ = ½, where C = 2) takes a Taylor expansion.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import GenlabError

#: below this |η| the Taylor expansions are used; their first omitted terms are < 1e-9 there.
TAYLOR_BELOW = 0.1


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample: -½ Σ (1 + logvar - mean² - exp(logvar))."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).flatten(1).sum(dim=1)


def continuous_bernoulli_log_normalizer(logits: Tensor) -> Tensor:
    """log C(λ) elementwise, λ = sigmoid(logits): log(η / tanh(η/2)), and log 2 + η²/12 - 7η⁴/1440 near η = 0."""
    small = logits.abs() < TAYLOR_BELOW
    safe = torch.where(small, torch.full_like(logits, TAYLOR_BELOW), logits)  # no 0/0, not even in gradients
    direct = safe.abs().log() - torch.tanh(safe / 2).abs().log()
    square = logits.pow(2)
    taylor = math.log(2.0) + square / 12 - 7 * square.pow(2) / 1440
    return torch.where(small, taylor, direct)


def continuous_bernoulli_mean(logits: Tensor) -> Tensor:
    """E[x] under CB(λ): 1/(1 - e^{-η}) - 1/η, and ½ + η/12 - η³/720 near η = 0."""
    small = logits.abs() < TAYLOR_BELOW
    safe = torch.where(small, torch.full_like(logits, TAYLOR_BELOW), logits)
    direct = -1 / torch.expm1(-safe) - 1 / safe
    taylor = 0.5 + logits / 12 - logits.pow(3) / 720
    return torch.where(small, taylor, direct)


class PixelLikelihood:
    """How a decoder's logits score an image (negative log-likelihood) and which image they stand for."""

    def nll(self, logits: Tensor, targets: Tensor) -> Tensor:
        """-log p(targets | logits) summed over the pixels of each image (shape N); targets in [0, 1]."""
        raise NotImplementedError

    def image(self, logits: Tensor) -> Tensor:
        """The image (intensities in [0, 1]) a decoder output stands for, e.g. the distribution's mean."""
        raise NotImplementedError


class Bernoulli(PixelLikelihood):
    """Binary cross-entropy on logits; the image is the mean sigmoid(η)."""

    def nll(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).sum(dim=1)

    def image(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class ContinuousBernoulli(PixelLikelihood):
    """BCE(η, x) - w · log C(λ): the continuous Bernoulli's negative log-density when w = 1.

    Args:
        log_normalizer_weight: w, the coefficient on log C(λ). 1 is the proper density; 0 is plain BCE.
            Values between trade likelihood for sharper samples (the reference's knob for a higher Inception Score).
        output: what `image` (and so the VAE's samples) returns: the distribution's "mean", or the
            "probability" λ itself, which many continuous Bernoulli VAEs show.
    """

    def __init__(self, log_normalizer_weight: float = 1.0, output: Literal["mean", "probability"] = "mean") -> None:
        if output not in ("mean", "probability"):
            raise GenlabError(f"ContinuousBernoulli output must be 'mean' or 'probability', got {output!r}")
        self.log_normalizer_weight, self.output = log_normalizer_weight, output

    def nll(self, logits: Tensor, targets: Tensor) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return (bce - self.log_normalizer_weight * continuous_bernoulli_log_normalizer(logits)).flatten(1).sum(dim=1)

    def image(self, logits: Tensor) -> Tensor:
        return continuous_bernoulli_mean(logits) if self.output == "mean" else torch.sigmoid(logits)

    def __repr__(self) -> str:
        return f"ContinuousBernoulli(log_normalizer_weight={self.log_normalizer_weight}, output={self.output!r})"


LIKELIHOODS: dict[str, PixelLikelihood] = {
    "bernoulli": Bernoulli(),
    "continuous_bernoulli": ContinuousBernoulli(),
}


def resolve_likelihood(likelihood: str | PixelLikelihood) -> PixelLikelihood:
    """A likelihood object from its registered name (or the object itself, for custom settings)."""
    if isinstance(likelihood, PixelLikelihood):
        return likelihood
    try:
        return LIKELIHOODS[likelihood]
    except KeyError:
        raise GenlabError(
            f"unknown model.likelihood {likelihood!r}: choose one of {', '.join(sorted(LIKELIHOODS))}"
            " or give a genlab.likelihoods class_path"
        ) from None
