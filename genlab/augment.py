"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

With little data the discriminator memorises the training images and its feedback to the generator stops being
useful. DiffAugment applies the same kind of random, differentiable transformations to *every* image the
discriminator sees, real and generated, in both updates, so the generator is trained through the augmentation
and never learns to produce augmented images. Three families, as in the paper's code (images in [-1, 1]):

- ``color``: brightness + U(-0.5, 0.5); saturation x U(0, 2) around the per-pixel channel mean; contrast
  x U(0.5, 1.5) around the image mean (each per image);
- ``translation``: shift by up to 1/8 of the size in each direction, the uncovered border filled with 0;
- ``cutout``: a square of half the size, at a random centre, set to 0.

Each family draws its randomness from the global torch generator on the images' device: the training stream that
genlab's checkpoints save and restore, so a resumed run draws the same augmentations, and scoring (which runs
under `genlab.rng.isolated_rng`) never shifts them. No value is read on the host.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import GenlabError


def brightness(images: Tensor) -> Tensor:
    return images + (_per_image_uniform(images) - 0.5)


def saturation(images: Tensor) -> Tensor:
    mean = images.mean(dim=1, keepdim=True)
    return (images - mean) * (_per_image_uniform(images) * 2) + mean


def contrast(images: Tensor) -> Tensor:
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (_per_image_uniform(images) + 0.5) + mean


def translation(images: Tensor, ratio: float = 0.125) -> Tensor:
    """Each image shifted by whole pixels (up to `ratio` of its height and width), zeros moved in."""
    n, _, height, width = images.shape
    shift_h, shift_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    down = torch.randint(-shift_h, shift_h + 1, (n, 1, 1), device=images.device)
    right = torch.randint(-shift_w, shift_w + 1, (n, 1, 1), device=images.device)
    rows = (torch.arange(height, device=images.device).view(1, height, 1) + down + 1).clamp_(0, height + 1)
    cols = (torch.arange(width, device=images.device).view(1, 1, width) + right + 1).clamp_(0, width + 1)
    padded = F.pad(images, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # one zero pixel around: where a shift points outside
    return padded[torch.arange(n, device=images.device).view(n, 1, 1), rows, cols].permute(0, 3, 1, 2)


def cutout(images: Tensor, ratio: float = 0.5) -> Tensor:
    """A (ratio·H) x (ratio·W) rectangle per image set to zero, its centre anywhere in the image."""
    n, _, height, width = images.shape
    size_h, size_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    centre_h = torch.randint(0, height + (1 - size_h % 2), (n, 1, 1), device=images.device)
    centre_w = torch.randint(0, width + (1 - size_w % 2), (n, 1, 1), device=images.device)
    top, left = centre_h - size_h // 2, centre_w - size_w // 2
    rows = torch.arange(height, device=images.device).view(1, height, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, width)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return images * (~inside).unsqueeze(1).to(images.dtype)


def _per_image_uniform(images: Tensor) -> Tensor:
    return torch.rand(images.shape[0], 1, 1, 1, dtype=images.dtype, device=images.device)


FAMILIES: dict[str, tuple[Callable[[Tensor], Tensor], ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """"color,translation" → ("color", "translation"); "" or None → no augmentation. One line for a bad name."""
    names = tuple(name.strip() for name in (policy or "").split(",") if name.strip())
    for name in names:
        if name not in FAMILIES:
            raise GenlabError(f"model.augment has {name!r}, which is not a DiffAugment family: use a comma-separated"
                              f" subset of {', '.join(FAMILIES)} (e.g. color,translation,cutout), or leave it empty")
    if len(set(names)) != len(names):
        raise GenlabError(f"model.augment names a family twice ({policy!r}): list each of {', '.join(FAMILIES)} once")
    return names


def diff_augment(images: Tensor, policy: tuple[str, ...]) -> Tensor:
    """The families of `policy` applied in order (as the paper's code does): differentiable in `images`."""
    for name in policy:
        for transform in FAMILIES[name]:
            images = transform(images)
    return images
