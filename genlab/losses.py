"""Adversarial objectives: small stateless loss objects, chosen by name or class_path, over the
discriminator's raw outputs.

Every loss takes raw scores (logits for the minimax family) so the sigmoid never has to be a layer of the
network; that keeps BCE numerically stable and lets one discriminator serve every loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import GenlabError


class AdversarialLoss:
    """A pair of objectives: what the discriminator (critic) minimises and what the generator minimises."""

    #: True when the discriminator's output is a logit, so D(x) as a probability is sigmoid(output).
    outputs_logits: bool = False

    #: whether GANs trained with this loss in bf16 are on record scoring like their fp32 runs (RESULTS.md), so
    #: genlab's automatic precision may choose bf16 for them; a new loss is fp32 until such runs are shown
    bf16_on_record: bool = False

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        raise NotImplementedError

    def generator(self, fake_scores: Tensor) -> Tensor:
        raise NotImplementedError

    def summaries(self, real_scores: Tensor, fake_scores: Tensor) -> dict[str, Tensor]:
        """Means worth watching in TensorBoard: D(x) and D(G(z)) (probabilities when D outputs logits)."""
        if self.outputs_logits:
            real_scores, fake_scores = real_scores.sigmoid(), fake_scores.sigmoid()
        return {"d/real": real_scores.mean(), "d/fake": fake_scores.mean()}


@dataclass(frozen=True)
class Minimax(AdversarialLoss):
    """Goodfellow et al.'s minimax game with binary cross-entropy on logits.

    D minimises -E[log D(x)] - E[log(1 - D(G(z)))]. The saturating generator minimises
    E[log(1 - D(G(z)))]; the non-saturating one (the default in practice) minimises -E[log D(G(z))].
    """

    saturating: bool = False
    outputs_logits = True

    @property
    def bf16_on_record(self) -> bool:  # type: ignore[override]
        """The non-saturating loss (gan_mnist, 3 seeds); the saturating one has no bf16 runs beside fp32 ones."""
        return not self.saturating

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()

    def generator(self, fake_scores: Tensor) -> Tensor:
        if self.saturating:
            return -F.softplus(fake_scores).mean()
        return F.softplus(-fake_scores).mean()


@dataclass(frozen=True)
class LeastSquares(AdversarialLoss):
    """LSGAN (Mao et al.) with the references' constants.

    D minimises ½E[(D(x) - 1)²] + ½E[D(G(z))²]; G minimises generator_scale · E[(D(G(z)) - 1)²].
    The MNIST reference uses generator_scale ½; the EmojiOne reference's Algorithm 1 uses 1 (no ½).
    """

    generator_scale: float = 0.5
    # RESULTS.md: dcgan_mnist_ema's raw generator (bf16, 3 seeds) against dcgan_mnist (fp32, 3 seeds), one classifier
    # pair: reference/is, FD, IS, precision and recall not distinguishable
    bf16_on_record = True

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return 0.5 * (real_scores - 1).pow(2).mean() + 0.5 * fake_scores.pow(2).mean()

    def generator(self, fake_scores: Tensor) -> Tensor:
        return self.generator_scale * (fake_scores - 1).pow(2).mean()


@dataclass(frozen=True)
class Wasserstein(AdversarialLoss):
    """WGAN critic objective: the critic minimises E[D(G(z))] - E[D(x)], the generator -E[D(G(z))].

    Needs a Lipschitz constraint on the critic: weight clipping or a gradient penalty (GAN settings).
    """

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean()

    def generator(self, fake_scores: Tensor) -> Tensor:
        return -fake_scores.mean()

    def summaries(self, real_scores: Tensor, fake_scores: Tensor) -> dict[str, Tensor]:
        """Adds the critic's Wasserstein-1 estimate E[D(x)] - E[D(G(z))]."""
        return super().summaries(real_scores, fake_scores) | {
            "wasserstein_estimate": real_scores.mean() - fake_scores.mean()
        }


@dataclass(frozen=True)
class Hinge(AdversarialLoss):
    """Hinge loss (Lim & Ye; Miyato et al.): D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""

    def discriminator(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()

    def generator(self, fake_scores: Tensor) -> Tensor:
        return -fake_scores.mean()


LossName = Literal["minimax", "non_saturating", "least_squares", "wasserstein", "hinge"]  # `--help` lists them

LOSSES: dict[str, AdversarialLoss] = {
    "minimax": Minimax(saturating=True),
    "non_saturating": Minimax(saturating=False),
    "least_squares": LeastSquares(generator_scale=0.5),
    "wasserstein": Wasserstein(),
    "hinge": Hinge(),
}


def resolve_loss(loss: LossName | str | AdversarialLoss) -> AdversarialLoss:
    """A loss object from its registered name (or the object itself, for custom settings)."""
    if isinstance(loss, AdversarialLoss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise GenlabError(
            f"unknown model.loss {loss!r}: choose one of {', '.join(sorted(LOSSES))}"
        ) from None


def gradient_penalty(
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP's penalty E[(‖∇ D(x̂)‖₂ - 1)²] at x̂ = ε·real + (1 - ε)·fake, ε ~ U(0, 1) per sample."""
    epsilon_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    epsilon = torch.rand(epsilon_shape, device=real.device, dtype=real.dtype, generator=generator)
    mixed = (epsilon * real.detach() + (1 - epsilon) * fake.detach()).requires_grad_(True)
    scores = discriminator(mixed, labels) if labels is not None else discriminator(mixed)
    (gradients,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (gradients.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


assert set(get_args(LossName)) == set(LOSSES), "LossName must list every registered loss"
