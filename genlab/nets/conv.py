"""Convolutional GAN networks: the InfoGAN-style DCGAN for 28x28 (CS231n seed) and the DCGAN for 32x32 RGB.

Conditional variants come from the same classes: the generator gets the one-hot label concatenated to its
noise, the discriminator one constant input channel per class.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from genlab.nets.base import (
    Discriminator,
    Generator,
    dcgan_normal_init,
    with_label_maps,
    with_one_hot,
    xavier_uniform_init,
)


class InfoGANGenerator(Generator):
    """CS231n's DCGAN generator for 1x28x28 (after InfoGAN): FC 1024 → FC 7·7·128 → 2 transposed convs.

    ReLU then BatchNorm after every layer but the tanh output. 6,580,801 parameters at latent_dim 4 (the
    count CS231n's test checks); each extra noise dimension adds 1,024.
    `xavier_init`: Xavier-uniform Linear and ConvTranspose2d weights (the TensorFlow CS231n notebook's
    initialiser); false keeps PyTorch's defaults, as the reference PyTorch notebook does.
    """

    def __init__(self, latent_dim: int = 96, num_classes: int = 0, channels: int = 1, xavier_init: bool = True) -> None:
        super().__init__()
        self.latent_dim, self.num_classes, self.out_shape = latent_dim, num_classes, (channels, 28, 28)
        self.net = nn.Sequential(
            nn.Linear(latent_dim + num_classes, 1024),
            nn.ReLU(),
            nn.BatchNorm1d(1024),
            nn.Linear(1024, 7 * 7 * 128),
            nn.ReLU(),
            nn.BatchNorm1d(7 * 7 * 128),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(64),
            nn.ConvTranspose2d(64, channels, kernel_size=4, stride=2, padding=1),
            nn.Tanh(),
        )
        if xavier_init:
            self.apply(xavier_uniform_init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(with_one_hot(z, labels, self.num_classes))


class InfoGANDiscriminator(Discriminator):
    """CS231n's DCGAN discriminator for 1x28x28: conv5-32, pool, conv5-64, pool, FC 1024, FC 1.

    LeakyReLU(0.01) throughout; 1,102,721 parameters when unconditional. `xavier_init` as for the generator.
    """

    def __init__(self, num_classes: int = 0, channels: int = 1, xavier_init: bool = True) -> None:
        super().__init__()
        self.in_shape, self.num_classes = (channels, 28, 28), num_classes
        self.net = nn.Sequential(
            nn.Conv2d(channels + num_classes, 32, kernel_size=5),
            nn.LeakyReLU(0.01),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, kernel_size=5),
            nn.LeakyReLU(0.01),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 64, 4 * 4 * 64),
            nn.LeakyReLU(0.01),
            nn.Linear(4 * 4 * 64, 1),
        )
        if xavier_init:
            self.apply(xavier_uniform_init)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(with_label_maps(x, labels, self.num_classes)).squeeze(1)


def _doublings(image_size: int) -> int:
    """How many stride-2 layers lead from 4x4 to image_size (which must be 4·2^k, k ≥ 1)."""
    doublings = round(math.log2(image_size / 4)) if image_size >= 8 else 0
    if doublings < 1 or 4 * 2**doublings != image_size:
        raise ValueError(f"DCGAN image_size must be 8, 16, 32, 64, ...; got {image_size}")
    return doublings


class DCGANGenerator(Generator):
    """DCGAN generator (Radford et al.) for square RGB images: z → 4x4 → … → image_size, BN+ReLU, tanh out.

    At 32x32 with base_channels 32: 100 → 128x4x4 → 64x8x8 → 32x16x16 → 3x32x32, the EmojiOne reference's
    layout. No BatchNorm on the output layer.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 3,
        image_size: int = 32,
        base_channels: int = 32,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.out_shape = (channels, image_size, image_size)
        doublings = _doublings(image_size)
        width = base_channels * 2 ** (doublings - 1)
        layers: list[nn.Module] = [
            nn.Unflatten(1, (latent_dim + num_classes, 1, 1)),
            nn.ConvTranspose2d(latent_dim + num_classes, width, kernel_size=4, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        for _ in range(doublings - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, kernel_size=4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_normal_init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(with_one_hot(z, labels, self.num_classes))


class DCGANDiscriminator(Discriminator):
    """DCGAN discriminator: strided 4x4 convs with BatchNorm and LeakyReLU, none on the input layer.

    At 32x32 with base_channels 32: 3x32x32 → 32x16x16 → 64x8x8 → 128x4x4 → one score.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 32,
        base_channels: int = 32,
        negative_slope: float = 0.2,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.in_shape, self.num_classes = (channels, image_size, image_size), num_classes
        doublings = _doublings(image_size)
        width = base_channels
        layers: list[nn.Module] = [
            nn.Conv2d(channels + num_classes, width, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(negative_slope),
        ]
        for _ in range(doublings - 1):
            layers += [
                nn.Conv2d(width, width * 2, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width * 2),
                nn.LeakyReLU(negative_slope),
            ]
            width *= 2
        layers.append(nn.Conv2d(width, 1, kernel_size=4, stride=1, padding=0))
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_normal_init)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(with_label_maps(x, labels, self.num_classes)).flatten()
