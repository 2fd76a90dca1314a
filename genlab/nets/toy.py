"""The toy 2-D GAN's networks: small leaky-ReLU MLPs whose discriminator ends in a 2-unit feature layer.

The discriminator's last hidden layer is 2 units wide by default so its feature space can be drawn as it is
(`ToyDiscriminator.features`), which is the point of the toy: watching real and generated points being pulled
apart, then pushed together, in the space the discriminator actually scores.
"""

from __future__ import annotations

from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.nets.base import Discriminator, Generator, xavier_uniform_init


def leaky_mlp(width: int, hidden: list[int], negative_slope: float) -> tuple[nn.Sequential, int]:
    """Linear + LeakyReLU per hidden width; returns the stack and its output width."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.LeakyReLU(negative_slope)]
        width = size
    return nn.Sequential(*layers), width


class ToyGenerator(Generator):
    """noise → leaky-ReLU hidden layers → a 2-D point (linear output: the data is not confined to [-1, 1]).

    Args:
        latent_dim: noise size.
        hidden: widths of the hidden layers (two in the seed: [16, 16]).
        negative_slope: LeakyReLU slope.
        xavier_init: Xavier-uniform initial weights (as the seed's TensorFlow layers).
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
        hidden: widths of the hidden layers (three in the seed: [16, 16, 2]); the last is the feature layer,
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
