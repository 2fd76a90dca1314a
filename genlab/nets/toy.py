"""The toy 2-D GAN's networks: small leaky-ReLU MLPs whose discriminator ends in a 2-unit feature layer.

The discriminator's last hidden layer is 2 units wide by default so its feature space can be drawn as it is
(`ToyDiscriminator.features`), which is the point of the toy: watching real and generated points being pulled
apart, then pushed together, in the space the discriminator actually scores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.nets.base import Discriminator, Generator, hidden_layers, xavier_uniform_init


def leaky_mlp(width: int, hidden: list[int], negative_slope: float) -> tuple[nn.Sequential, int]:
    """Linear + LeakyReLU per hidden width; returns the stack and its output width."""
    layers, width = hidden_layers(width, hidden, lambda: nn.LeakyReLU(negative_slope))
    return nn.Sequential(*layers), width


class ToyGenerator(Generator):
    """noise → leaky-ReLU hidden layers → a 2-D point (linear output: the data is not confined to [-1, 1]).

    Args:
        latent_dim: noise size.
        hidden: widths of the hidden layers (two in the reference: [16, 16]).
        negative_slope: LeakyReLU slope.
        xavier_init: Xavier-uniform initial weights (as the reference's TensorFlow layers).
    """

    def __init__(
        self,
        latent_dim: int = 2,
        hidden: list[int] = [16, 16],  # noqa: B006 - jsonargparse shows list defaults in --help
        negative_slope: float = 0.2,
        xavier_init: bool = True,
    ) -> None:
        super().__init__()
        if latent_dim < 1 or not hidden or min(hidden) < 1:
            raise GenlabError(
                f"ToyGenerator needs latent_dim >= 1 and positive hidden widths, got {latent_dim} and {hidden}"
            )
        self.latent_dim, self.num_classes, self.out_shape = latent_dim, 0, (2,)
        self.body, width = leaky_mlp(latent_dim, hidden, negative_slope)
        self.out = nn.Linear(width, 2)
        if xavier_init:
            self.apply(xavier_uniform_init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.out(self.body(z))


class ToyDiscriminator(Discriminator):
    """2-D point → leaky-ReLU hidden layers → one raw score; `features` exposes the last hidden layer.

    Args:
        hidden: widths of the hidden layers (three in the reference: [16, 16, 2]); the last is the feature layer,
            2 units wide so ToyGANPlots can draw it.
        negative_slope: LeakyReLU slope.
        xavier_init: Xavier-uniform initial weights.
    """

    def __init__(
        self,
        hidden: list[int] = [16, 16, 2],  # noqa: B006
        negative_slope: float = 0.2,
        xavier_init: bool = True,
    ) -> None:
        super().__init__()
        if not hidden or min(hidden) < 1:
            raise GenlabError(f"ToyDiscriminator needs at least one positive hidden width, got {hidden}")
        self.in_shape, self.num_classes = (2,), 0
        self.body, width = leaky_mlp(2, hidden, negative_slope)
        self.feature_dim = width
        self.out = nn.Linear(width, 1)
        if xavier_init:
            self.apply(xavier_uniform_init)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer's activations (after its LeakyReLU), N x hidden[-1]; the score is linear in them."""
        return self.body(x)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.out(self.features(x)).squeeze(1)


def feature_layer_error(discriminator: Any) -> str | None:
    """Why `discriminator` cannot be drawn in 2-D (no `features` method, or features not 2 wide), or None."""
    features = getattr(discriminator, "features", None)
    name = type(discriminator).__name__
    if not callable(features):
        return f"{name} has no features(x) method: use genlab.nets.ToyDiscriminator"
    parameter = next(discriminator.parameters(), None)
    probe = torch.zeros(1, 2, device=parameter.device if parameter is not None else "cpu")
    was_training = discriminator.training
    discriminator.eval()  # a 1-point probe: BatchNorm in training mode would refuse it
    try:
        with torch.no_grad():
            shape = tuple(features(probe).shape)
    finally:
        discriminator.train(was_training)
    if shape != (1, 2):
        units = shape[1] if len(shape) == 2 else f"shape {shape[1:]}"
        return f"{name}'s feature layer has {units} units, not 2: make the last of its hidden sizes 2"
    return None
