"""Picture-free measures of how well a toy GAN fits 2-D data: distance to the curve, sliced Wasserstein.

Pure functions of tensors, computed in float64: the toy's numbers are small and should not carry float32
round-off into a logged curve.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _real_cbrt(x: Tensor) -> Tensor:
    return x.sign() * x.abs().pow(1.0 / 3.0)


def parabola_foot_candidates(points: Tensor, a: float, b: float) -> Tensor:
    """The x-coordinates t of the curve points (t, a·t² + b) where the squared distance to a point is stationary.

    Setting d/dt [(t - u)² + (a·t² + b - v)²] = 0 for the point (u, v) gives the depressed cubic
    t³ + p·t + q = 0 with p = (1 + 2a(b - v)) / (2a²) and q = -u / (2a²), solved in closed form: Cardano's
    formula when it has one real root, the trigonometric form when it has three. Returns N x 3 (the single
    root repeated when there is one).
    """
    u, v = points[:, 0], points[:, 1]
    p = (1 + 2 * a * (b - v)) / (2 * a * a)
    q = -u / (2 * a * a)
    discriminant = (q / 2).pow(2) + (p / 3).pow(3)
    one_root = discriminant > 0
    root = discriminant.clamp(min=0).sqrt()
    cardano = _real_cbrt(-q / 2 + root) + _real_cbrt(-q / 2 - root)
    # three real roots need p < 0; p = 0 and a non-positive discriminant mean q = 0: the triple root t = 0
    p_neg = torch.where(p < 0, p, torch.full_like(p, -1.0))
    radius = torch.where(p < 0, 2 * (-p_neg / 3).sqrt(), torch.zeros_like(p))
    angle = torch.acos(((3 * q) / (2 * p_neg) * (-3 / p_neg).sqrt()).clamp(-1.0, 1.0))
    shifts = torch.tensor([0.0, 2.0, 4.0], dtype=points.dtype, device=points.device) * math.pi / 3
    trigonometric = radius[:, None] * torch.cos(angle[:, None] / 3 - shifts)
    return torch.where(one_root[:, None], cardano[:, None].expand(-1, 3), trigonometric)


def distance_to_parabola(points: Tensor, a: float, b: float) -> Tensor:
    """Euclidean (shortest, perpendicular) distance of each 2-D point to the whole curve y = a·x² + b.

    Not the vertical residual |y - a·x² - b|: above the vertex of y = x² the point (0, 1) is 1 away vertically
    but √3/2 away from the curve's nearest points (±1/√2, 1/2). The curve is not cut to the data's x-range, so a
    point on the curve's continuation counts as on the curve (the distribution distance catches that).

    Args:
        points: N x 2 tensor of (x, y).
        a, b: the curve's coefficients; a = 0 is the line y = b.
    Returns:
        N distances, float64.
    """
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be N x 2, got {tuple(points.shape)}")
    points = points.detach().to(torch.float64)
    if a == 0:
        return (points[:, 1] - b).abs()
    t = parabola_foot_candidates(points, a, b)
    dx = t - points[:, :1]
    dy = a * t.pow(2) + b - points[:, 1:]
    return (dx.pow(2) + dy.pow(2)).sqrt().min(dim=1).values


def mean_distance_to_parabola(points: Tensor, a: float, b: float) -> float:
    """The mean of `distance_to_parabola`: 0 exactly when every point lies on the curve."""
    return float(distance_to_parabola(points, a, b).mean())


def sliced_wasserstein(x: Tensor, y: Tensor, num_directions: int = 64) -> float:
    """Sliced Wasserstein-2 distance between two equal-sized 2-D samples (their empirical distributions).

    SW₂(P, Q)² is the average over directions θ on the half circle of W₂² between the projections θ·X and θ·Y;
    in one dimension W₂² between two n-point samples is the mean squared difference of the sorted values. The
    directions are `num_directions` evenly spaced angles πk/K (a deterministic quadrature of the uniform
    average, so the same two samples always give the same number). It is a metric: 0 exactly for identical
    samples, and for Q = P shifted by μ it is |μ|/√2 (the average of cos² over the circle is ½).

    The value between two finite samples of the *same* distribution is not 0: compare a generator against
    the real-vs-real value for the same sample size.
    """
    if x.dim() != 2 or x.shape[1] != 2 or x.shape != y.shape:
        raise ValueError(
            f"sliced_wasserstein needs two N x 2 samples of equal size, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if num_directions < 1:
        raise ValueError(f"num_directions must be at least 1, got {num_directions}")
    x, y = x.detach().to(torch.float64), y.detach().to(x.device, torch.float64)
    angles = torch.arange(num_directions, dtype=torch.float64, device=x.device) * math.pi / num_directions
    directions = torch.stack([angles.cos(), angles.sin()], dim=0)  # 2 x K
    x_sorted = (x @ directions).sort(dim=0).values
    y_sorted = (y @ directions).sort(dim=0).values
    return float((x_sorted - y_sorted).pow(2).mean().sqrt())
