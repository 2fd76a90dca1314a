"""VAE networks: encoders give a diagonal Gaussian posterior, decoders give per-pixel logits.

The MLP pair is the reference's (encoder 784-512-256-128-2·z, decoder z-400-600-800-784); the convolutional
pair halves (encoder) and doubles (decoder) the image size with stride-2 4x4 convolutions. Any encoder can
be combined with any decoder of the same `latent_dim` and image shape.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from genlab.nets.autoencoder import fully_connected
from genlab.nets.base import keras_dense_init


class VAEEncoder(nn.Module):
    """Maps images of shape `in_shape` (pixel intensities in [0, 1]) to (mean, log-variance), each N x latent_dim."""

    in_shape: tuple[int, ...]
    latent_dim: int

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class VAEDecoder(nn.Module):
    """Maps latent vectors to logits (N x `out_shape`) of the per-pixel likelihood over intensities in [0, 1]."""

    latent_dim: int
    out_shape: tuple[int, ...]

    def forward(self, z: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def _split_moments(output: Tensor) -> tuple[Tensor, Tensor]:
    mean, logvar = output.chunk(2, dim=1)
    return mean, logvar


class MLPEncoder(VAEEncoder):
    """flattened image → hidden ReLU layers → 2·latent_dim (mean, log-variance; no activation on the last layer).

    Args:
        in_shape: shape of one image, e.g. [1, 28, 28].
        hidden: widths of the hidden layers; the reference's are [512, 256, 128].
        latent_dim: size of z.
        xavier_init: Glorot-uniform weights and zero biases (`keras_dense_init`); false keeps PyTorch's default
            initialisation, as the reference notebook does.
    """

    def __init__(
        self,
        in_shape: list[int] = [1, 28, 28],  # noqa: B006 - jsonargparse shows list defaults in --help
        hidden: list[int] = [512, 256, 128],  # noqa: B006
        latent_dim: int = 20,
        xavier_init: bool = True,
    ) -> None:
        super().__init__()
        self.in_shape, self.latent_dim = tuple(in_shape), latent_dim
        self.net = fully_connected([math.prod(self.in_shape), *hidden, 2 * latent_dim])
        if xavier_init:
            self.net.apply(keras_dense_init)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _split_moments(self.net(x.flatten(1)))


class MLPDecoder(VAEDecoder):
    """z → hidden ReLU layers → one logit per pixel.

    Args:
        latent_dim: size of z.
        hidden: widths of the hidden layers; the reference's are [400, 600, 800].
        out_shape: shape of one image.
        xavier_init: as for `MLPEncoder`.
    """

    def __init__(
        self,
        latent_dim: int = 20,
        hidden: list[int] = [400, 600, 800],  # noqa: B006
        out_shape: list[int] = [1, 28, 28],  # noqa: B006
        xavier_init: bool = True,
    ) -> None:
        super().__init__()
        self.latent_dim, self.out_shape = latent_dim, tuple(out_shape)
        self.net = fully_connected([latent_dim, *hidden, math.prod(self.out_shape)])
        if xavier_init:
            self.net.apply(keras_dense_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


def _reduced_size(in_shape: tuple[int, ...], stages: int) -> tuple[int, int]:
    height, width = in_shape[1:]
    factor = 2**stages
    if height % factor or width % factor:
        raise ValueError(f"{stages} stride-2 stages need image sides divisible by {factor}; got {height}x{width}")
    return height // factor, width // factor


class ConvEncoder(VAEEncoder):
    """Stride-2 4x4 convolutions with ReLU (each halves the image), then FC hidden → 2·latent_dim.

    At 1x28x28 with channels [32, 64]: 32x14x14 → 64x7x7 → FC 256 → mean and log-variance.

    Args:
        in_shape: shape of one image; its sides must be divisible by 2^len(channels).
        channels: output channels of the convolutions.
        hidden: width of the fully connected layer after the convolutions.
        latent_dim: size of z.
    """

    def __init__(
        self,
        in_shape: list[int] = [1, 28, 28],  # noqa: B006
        channels: list[int] = [32, 64],  # noqa: B006
        hidden: int = 256,
        latent_dim: int = 20,
    ) -> None:
        super().__init__()
        self.in_shape, self.latent_dim = tuple(in_shape), latent_dim
        height, width = _reduced_size(self.in_shape, len(channels))
        layers: list[nn.Module] = []
        for width_in, width_out in zip([self.in_shape[0], *channels[:-1]], channels):
            layers += [nn.Conv2d(width_in, width_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        layers += [nn.Flatten(), nn.Linear(channels[-1] * height * width, hidden), nn.ReLU(),
                   nn.Linear(hidden, 2 * latent_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _split_moments(self.net(x))


class ConvDecoder(VAEDecoder):
    """The mirror of `ConvEncoder`: FC hidden → FC to a small feature map → stride-2 transposed convs → logits.

    At 1x28x28 with channels [64, 32]: z → FC 256 → 64x7x7 → 32x14x14 → 1x28x28 logits.

    Args:
        latent_dim: size of z.
        channels: channels of the feature maps before each transposed convolution.
        hidden: width of the first fully connected layer.
        out_shape: shape of one image; its sides must be divisible by 2^len(channels).
    """

    def __init__(
        self,
        latent_dim: int = 20,
        channels: list[int] = [64, 32],  # noqa: B006
        hidden: int = 256,
        out_shape: list[int] = [1, 28, 28],  # noqa: B006
    ) -> None:
        super().__init__()
        self.latent_dim, self.out_shape = latent_dim, tuple(out_shape)
        height, width = _reduced_size(self.out_shape, len(channels))
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels[0] * height * width),
            nn.ReLU(),
            nn.Unflatten(1, (channels[0], height, width)),
        ]
        outputs = [*channels[1:], self.out_shape[0]]
        for index, (width_in, width_out) in enumerate(zip(channels, outputs)):
            layers.append(nn.ConvTranspose2d(width_in, width_out, kernel_size=4, stride=2, padding=1))
            if index < len(channels) - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
