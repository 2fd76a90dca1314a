"""Synthetic 2-D points on the curve y = a·x² + b: the toy GAN's data, no download needed."""

from __future__ import annotations

import torch

from genlab.data.base import Split, Splits, TensorDataModule


def quadratic_points(
    count: int, a: float, b: float, x_range: float, noise: float, generator: torch.Generator
) -> torch.Tensor:
    """`count` points (x, a·x² + b + ε), x ~ U(-x_range, x_range), ε ~ N(0, noise²)."""
    x = (torch.rand(count, generator=generator) * 2 - 1) * x_range
    y = a * x.pow(2) + b + noise * torch.randn(count, generator=generator)
    return torch.stack([x, y], dim=1)


class QuadraticDataModule(TensorDataModule):
    """Points on y = a·x² + b (label 0), with train/val/test drawn from one seeded generator.

    Args:
        train_size, val_size, test_size: points per split.
        a, b: the curve; x_range: x is uniform on [-x_range, x_range]; noise: std of y's Gaussian noise.
        seed: seeds the points and the shuffling.
    """

    data_shape = (2,)
    num_classes = 0

    def __init__(
        self,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        a: float = 1.0,
        b: float = 0.0,
        x_range: float = 1.0,
        noise: float = 0.0,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, drop_last=drop_last, seed=seed)
        self.sizes = (train_size, val_size, test_size)
        self.a, self.b, self.x_range, self.noise = a, b, x_range, noise

    def load_splits(self) -> Splits:
        generator = torch.Generator().manual_seed(self.seed)
        splits = []
        for count in self.sizes:
            points = quadratic_points(count, self.a, self.b, self.x_range, self.noise, generator)
            splits.append(Split(points, torch.zeros(count, dtype=torch.long)))
        return Splits(*splits)
