"""What every generator and discriminator network declares, so models and checks need no guessing."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def hidden_layers(width: int, hidden: list[int], activation: Callable[[], nn.Module],
                  batch_norm_eps: float | None = None, dropout: float | None = None) -> tuple[list[nn.Module], int]:
    """The one MLP builder of genlab's networks: per hidden width, Linear → BatchNorm (from the second layer on,
    when `batch_norm_eps` is given) → `activation()`, with Dropout before every Linear but the first when `dropout`
    is given. Returns the layers and their output width; modules are made in that order, so a seeded
    initialisation draws the same weights as the references' code."""
    layers: list[nn.Module] = []
    for index, size in enumerate(hidden):
        if dropout is not None and index > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, size))
        if batch_norm_eps is not None and index > 0:
            layers.append(nn.BatchNorm1d(size, eps=batch_norm_eps))
        layers.append(activation())
        width = size
    return layers, width


class Generator(nn.Module):
    """Maps noise (and, when `num_classes` > 0, class labels) to samples of shape `out_shape`."""

    latent_dim: int
    num_classes: int = 0
    out_shape: tuple[int, ...]

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Discriminator(nn.Module):
    """Maps samples of shape `in_shape` (and labels when conditional) to one raw score per sample."""

    in_shape: tuple[int, ...]
    num_classes: int = 0

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def with_one_hot(features: Tensor, labels: Tensor | None, num_classes: int) -> Tensor:
    """Concatenate one-hot labels to flat features (the references' conditioning); a no-op when unconditional.

    The one-hot rows are built by comparison rather than `F.one_hot`, which reads the labels' range on the host
    (a sync per call on every device but CUDA); the data's class count is checked before training instead."""
    if num_classes == 0:
        return features
    if labels is None:
        raise ValueError(f"this network is conditional on {num_classes} classes: pass labels")
    return torch.cat([features, one_hot_rows(labels, num_classes, features.dtype)], dim=1)


def one_hot_rows(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """`F.one_hot(labels, num_classes)` in `dtype`, built without reading the labels on the host."""
    return (labels[:, None] == torch.arange(num_classes, device=labels.device)).to(dtype)


def with_label_maps(images: Tensor, labels: Tensor | None, num_classes: int) -> Tensor:
    """Concatenate one constant channel per class to an image batch (conditioning a conv discriminator)."""
    if num_classes == 0:
        return images
    if labels is None:
        raise ValueError(f"this network is conditional on {num_classes} classes: pass labels")
    one_hot = one_hot_rows(labels, num_classes, images.dtype)[:, :, None, None]
    return torch.cat([images, one_hot.expand(-1, -1, *images.shape[2:])], dim=1)


def xavier_uniform_init(module: nn.Module) -> None:
    """Xavier-uniform weights of Linear and ConvTranspose2d (the TensorFlow version of the CS231n GAN notebook;
    the reference PyTorch notebook keeps PyTorch's default initialisation, which `xavier_init: false` gives)."""
    if isinstance(module, (nn.Linear, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)


def keras_dense_init(module: nn.Module) -> None:
    """Keras' Dense defaults: Glorot-uniform weights and zero biases of Linear layers.

    For the MLP VAE nets it matters: on MNIST, 3 epochs of Adam 1e-3 reach a validation negative ELBO of 118.5
    with it against 129.0 with PyTorch's default Linear init (which the reference PyTorch notebook uses).
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def dcgan_normal_init(module: nn.Module) -> None:
    """DCGAN's initialisation (Radford et al.): conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
