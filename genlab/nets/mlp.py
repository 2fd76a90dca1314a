"""Fully connected GAN networks: the CS231n MLP GAN and the BatchNorm MLP GAN of the FashionMNIST seed.

One generator and one discriminator class cover both seeds (and their conditional variants: the one-hot
label is concatenated to the noise and to the flattened image) through constructor settings.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from genlab.nets.base import Discriminator, Generator, hidden_layers, with_one_hot, xavier_uniform_init


def _activation(name: Literal["relu", "leaky_relu"], negative_slope: float) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.LeakyReLU(negative_slope)


class MLPGenerator(Generator):
    """noise (+ one-hot label) → hidden layers → tanh image.

    Args:
        latent_dim: noise size.
        hidden: widths of the hidden layers, e.g. [1024, 1024] (CS231n) or [128, 256, 512, 1024].
        out_shape: shape of one sample, e.g. [1, 28, 28].
        activation: hidden activation; `negative_slope` applies to leaky_relu.
        batch_norm: BatchNorm after every hidden layer but the first, as in the BatchNorm MLP GAN seed.
        batch_norm_eps: the reference passes 0.8 as BatchNorm's second positional argument, which is eps;
            kept as a setting so that seed is reproduced exactly.
        num_classes: > 0 makes the generator conditional on a one-hot label.
        xavier_init: the CS231n reference's Xavier-uniform initialisation.
    """

    def __init__(
        self,
        latent_dim: int = 96,
        hidden: list[int] = [1024, 1024],  # noqa: B006 - jsonargparse shows list defaults in --help
        out_shape: list[int] = [1, 28, 28],  # noqa: B006
        activation: Literal["relu", "leaky_relu"] = "relu",
        negative_slope: float = 0.2,
        batch_norm: bool = False,
        batch_norm_eps: float = 1e-5,
        num_classes: int = 0,
        xavier_init: bool = True,
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_classes, self.out_shape = latent_dim, num_classes, tuple(out_shape)
        layers, width = hidden_layers(latent_dim + num_classes, hidden, lambda: _activation(activation, negative_slope),
                                      batch_norm_eps if batch_norm else None)
        layers += [nn.Linear(width, math.prod(self.out_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        if xavier_init:
            self.apply(xavier_uniform_init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        flat = self.net(with_one_hot(z, labels, self.num_classes))
        return flat.view(z.shape[0], *self.out_shape)


class MLPDiscriminator(Discriminator):
    """flattened image (+ one-hot label) → hidden LeakyReLU layers → one raw score.

    Args:
        in_shape: shape of one sample, e.g. [1, 28, 28].
        hidden: widths of the hidden layers, e.g. [256, 256] (CS231n) or [512, 256].
        negative_slope: LeakyReLU slope (0.01 in CS231n, 0.2 in the BatchNorm MLP GAN seed).
        num_classes: > 0 makes the discriminator conditional on a one-hot label.
        xavier_init: the CS231n reference's Xavier-uniform initialisation.
    """

    def __init__(
        self,
        in_shape: list[int] = [1, 28, 28],  # noqa: B006
        hidden: list[int] = [256, 256],  # noqa: B006
        negative_slope: float = 0.01,
        num_classes: int = 0,
        xavier_init: bool = True,
    ) -> None:
        super().__init__()
        self.in_shape, self.num_classes = tuple(in_shape), num_classes
        layers, width = hidden_layers(math.prod(self.in_shape) + num_classes, hidden,
                                      lambda: nn.LeakyReLU(negative_slope))
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        if xavier_init:
            self.apply(xavier_uniform_init)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(with_one_hot(x.flatten(1), labels, self.num_classes)).squeeze(1)
