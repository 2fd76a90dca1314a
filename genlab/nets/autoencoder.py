"""Fully connected autoencoder for denoising: flattened image → code → image in [-1, 1].

`fully_connected` is also the building block of the MLP VAE networks (`genlab.nets.vae`).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from genlab.nets.base import hidden_layers


def fully_connected(widths: list[int], final_activation: nn.Module | None = None) -> nn.Sequential:
    """Linear layers through `widths` with ReLU between them; the last layer gets `final_activation` (or none)."""
    layers, width = hidden_layers(widths[0], widths[1:-1], nn.ReLU)
    layers.append(nn.Linear(width, widths[-1]))
    if final_activation is not None:
        layers.append(final_activation)
    return nn.Sequential(*layers)


class MLPAutoencoder(nn.Module):
    """in → hidden… → linear code → reversed hidden… → in, ReLU between layers; outputs in the data range.

    Args:
        in_shape: shape of one image, e.g. [1, 28, 28].
        hidden: widths between the image and the code, mirrored on the way back.
        code_dim: width of the bottleneck.
        residual: False: the decoder's tanh output is the image. True: the decoder's (linear) output is a
            correction added to the input, clipped to [-1, 1]; pixels the noise did not touch then need no
            trip through the bottleneck, which a plain autoencoder reproduces only approximately.
    """

    def __init__(
        self,
        in_shape: list[int] = [1, 28, 28],  # noqa: B006 - jsonargparse shows list defaults in --help
        hidden: list[int] = [512, 256],  # noqa: B006
        code_dim: int = 128,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.in_shape, self.residual = tuple(in_shape), residual
        size = math.prod(self.in_shape)
        self.encoder = fully_connected([size, *hidden, code_dim])
        self.decoder = fully_connected([code_dim, *reversed(hidden), size], None if residual else nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        output = self.decoder(self.encoder(x.flatten(1))).view(x.shape[0], *self.in_shape)
        return (x + output).clamp(-1, 1) if self.residual else output
