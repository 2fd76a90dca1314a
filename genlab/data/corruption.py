"""Corruptions for denoising: batch transforms `corrupt(images, generator) -> images`.

They act on whole batches of tensors (not single PIL images), so a model can corrupt each training batch
afresh and an evaluation can corrupt the same images the same way every time by passing a seeded
`torch.Generator`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.errors import GenlabError


class Corruption:
    """A random, batched image corruption; `generator` makes it reproducible (the global RNG otherwise)."""

    def corrupt_with_region(self, images: Tensor,
                            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """The corrupted images and a boolean mask (broadcastable to them) of the region the corruption
        touched, or None when it may touch every pixel."""
        raise NotImplementedError

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.corrupt_with_region(images, generator)[0]


def _random(draw: str, *args: object, generator: torch.Generator | None, like: Tensor, **kwargs: object) -> Tensor:
    """`torch.<draw>` on the generator's device (a CPU generator cannot fill a CUDA tensor), moved to `like`'s."""
    device = generator.device if generator is not None else like.device
    return getattr(torch, draw)(*args, generator=generator, device=device, **kwargs).to(like.device)


class PatchNoise(Corruption):
    """Gaussian noise inside one randomly placed square patch per image; every other pixel stays unchanged.

    The patch lies wholly inside the image, its top-left corner uniform over the allowed positions, and is the
    same for all channels of an image.

    Args:
        patch_size: side of the square patch in pixels (the reference's 8).
        std: standard deviation of the noise in data units (images in [-1, 1]: 0.5 is a quarter of the range).
        clamp: clip the noisy pixels back into the data range [-1, 1].
    """

    def __init__(self, patch_size: int = 8, std: float = 0.5, clamp: bool = True) -> None:
        if patch_size < 1:
            raise GenlabError(f"PatchNoise patch_size must be at least 1, got {patch_size}")
        if std < 0:
            raise GenlabError(f"PatchNoise std must be 0 or more, got {std}")
        self.patch_size, self.std, self.clamp = patch_size, std, clamp

    def mask(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A boolean N x 1 x H x W mask, true inside each image's patch."""
        n, _, height, width = images.shape
        if self.patch_size > min(height, width):
            raise GenlabError(
                f"PatchNoise patch_size {self.patch_size} does not fit {height}x{width} images: lower patch_size"
            )
        top = _random("randint", height - self.patch_size + 1, (n, 1), generator=generator, like=images)
        left = _random("randint", width - self.patch_size + 1, (n, 1), generator=generator, like=images)
        rows = torch.arange(height, device=images.device)
        cols = torch.arange(width, device=images.device)
        in_rows = (rows >= top) & (rows < top + self.patch_size)  # N x H
        in_cols = (cols >= left) & (cols < left + self.patch_size)  # N x W
        return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]

    def corrupt_with_region(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        mask = self.mask(images, generator)
        noise = _random("randn", images.shape, generator=generator, like=images, dtype=images.dtype)
        noisy = images + self.std * noise
        if self.clamp:
            noisy = noisy.clamp(-1, 1)
        return torch.where(mask, noisy, images), mask

    def __repr__(self) -> str:
        return f"PatchNoise(patch_size={self.patch_size}, std={self.std}, clamp={self.clamp})"
