"""β-VAE (Higgins et al. 2017): the worked example of docs/architecture.md, "Adding a model"."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from genlab.errors import GenlabError
from genlab.models.vae import VAE


class BetaVAE(VAE):
    """The VAE with its KL term weighted by `beta`: > 1 trades reconstruction for a more factorised latent space
    (1 is the VAE). Every other setting is the VAE's, forwarded unchanged.

    Args:
        beta: the weight of the KL term in the loss (`loss/total = loss/recon + beta · loss/kl`).
    """

    def __init__(self, *args: Any, beta: float = 4.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not beta > 0:
            raise GenlabError(f"model.beta must be positive (1 is the plain VAE), got {beta}")
        self.beta = beta

    def losses(self, x: Tensor) -> dict[str, Tensor]:
        losses = super().losses(x)
        return {**losses, "loss/total": losses["loss/recon"] + self.beta * losses["loss/kl"]}
