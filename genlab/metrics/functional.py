"""The scores as pure functions of probability tables and feature statistics, computed in float64.

Conventions (each written into every result by the metric classes):
- Inception Score: IS = exp(E_x KL(p(y|x) || p(y))) within each of `splits` equal parts of the samples,
  reported as the mean and the population standard deviation (ddof 0) over the parts. The parts are taken
  after a permutation drawn from `numpy.random.RandomState(seed)`, exactly torch-fidelity's convention
  (seed 2020 there), so the same probabilities give the same score on every run and every process count.
  Salimans et al.'s original code uses the same ddof-0 std but no shuffle; torchmetrics' std is ddof 1
  over an unseeded shuffle.
- Modified Inception Score (Gurumurthy et al., DeLiGAN 2017): within each predicted class c,
  m-IS_c = exp(E_{x_i, x_j in c} KL(p(y|x_i) || p(y|x_j))), all pairs including i = j, as the authors' code
  does; reported as the mean (and population std) over the classes that hold at least two samples. It has no
  fixed direction: it rewards diversity *within* a class, which a confident classifier does not see in real
  data (real MNIST test images score about 1.2, blurry or ambiguous samples score higher). It is only meaningful
  next to its real-data value, so the classifier suite also reports `m_is_gap` = |m-IS - m-IS(real)|, lower
  being closer to real data.
- Fréchet distance between Gaussians fitted to two feature sets (unbiased covariances):
  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the trace of the square root taken from the eigenvalues of
  S1 S2 as torch-fidelity and torchmetrics do.
- k-NN manifold scores. The k-NN ball of a point is the closed Euclidean ball reaching its k-th nearest other
  point of the same set (the (k+1)-th smallest distance counting itself, torch-fidelity's `kthvalue(k + 1)`; a
  duplicate counts as a neighbour at distance 0). For real features X (N) and generated features Y (M):
  precision = share of Y inside some real ball, recall = share of X inside some generated ball (Kynkäänniemi
  et al. 2019, torch-fidelity >= 0.4's orientation); density = (1 / kM) sum over Y of the real balls holding it
  (can exceed 1), coverage = share of X whose own ball holds some Y (Naeem et al. 2020). Points on a ball's
  surface are inside (`<=`, as torch-fidelity; the prdc package's `<` differs only on exact ties). Distances in
  float64, in blocks of at most `chunk` x `chunk`, so 50,000 features never make a 50,000² matrix.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


def _check_probabilities(probs: Tensor) -> Tensor:
    if probs.dim() != 2 or len(probs) == 0:
        raise ValueError(f"expected an N x C table of class probabilities, got shape {tuple(probs.shape)}")
    probs = probs.to(torch.float64)
    if (probs < 0).any() or not torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-4):
        raise ValueError("every row of a probability table must be non-negative and sum to 1")
    return probs


def kl_to_marginal(probs: Tensor, epsilon: float = 0.0) -> Tensor:
    """KL(p(y|x_i) || p(y)) for every row i, p(y) being the mean row; 0·log 0 counts as 0.

    `epsilon` > 0 computes sum_y p log(p / p(y) + epsilon) instead, the reference notebooks' guarded form (their
    1e-10 moves an IS of 9 by about 1e-9, but a protocol is a protocol).
    """
    marginal = probs.mean(0, keepdim=True)
    if epsilon:
        ratio = torch.where(probs > 0, probs / marginal, torch.zeros_like(probs))
        return torch.special.xlogy(probs, ratio + epsilon).sum(1)
    return (torch.special.xlogy(probs, probs) - torch.special.xlogy(probs, marginal)).sum(1)


def split_order(n: int, seed: int | None) -> Tensor:
    """The sample order the splits are cut from: torch-fidelity's seeded NumPy permutation, or as given (None)."""
    if seed is None:
        return torch.arange(n)
    return torch.from_numpy(np.random.RandomState(seed).permutation(n))


def inception_score(probs: Tensor, splits: int = 10, seed: int | None = 2020,
                    epsilon: float = 0.0) -> tuple[float, float]:
    """(mean, population std) of exp(E[KL(p(y|x) || p(y))]) over `splits` parts; see the module docstring and
    `kl_to_marginal` for `epsilon`."""
    probs = _check_probabilities(probs)
    n = len(probs)
    if not 1 <= splits <= n:
        raise ValueError(f"cannot cut {n} samples into {splits} splits")
    probs = probs[split_order(n, seed)]
    scores = torch.stack([kl_to_marginal(probs[i * n // splits : (i + 1) * n // splits], epsilon).mean().exp()
                          for i in range(splits)])
    return float(scores.mean()), float(scores.std(unbiased=False))


def modified_inception_score(probs: Tensor) -> tuple[float, float]:
    """(mean, population std) over predicted classes of exp(mean over pairs in the class of KL(p_i || p_j)).

    E_i E_j KL(p_i || p_j) = E_i[sum_y p_i log p_i] - sum_y E_i[p_i(y)] E_j[log p_j(y)], so the all-pairs mean
    costs one pass. A class with fewer than two samples has no pairs and is left out.
    """
    probs = _check_probabilities(probs)
    predicted = probs.argmax(1)
    scores = []
    for c in predicted.unique():
        group = probs[predicted == c]
        if len(group) < 2:
            continue
        entropy_term = torch.special.xlogy(group, group).sum(1).mean()
        mean, mean_log = group.mean(0), torch.log(group).mean(0)
        cross_term = torch.where(mean > 0, mean * mean_log, torch.zeros_like(mean)).sum()  # 0·log 0 = 0
        scores.append((entropy_term - cross_term).exp())
    if not scores:
        raise ValueError("m-IS needs a predicted class with at least two samples")
    values = torch.stack(scores)
    return float(values.mean()), float(values.std(unbiased=False))


def gaussian_statistics(total: Tensor, outer: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance from a feature sum, a sum of outer products and the sample count."""
    mean = total.to(torch.float64) / count
    covariance = (outer.to(torch.float64) - count * torch.outer(mean, mean)) / (count - 1)
    return mean, covariance


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2, sigma1, sigma2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    trace_sqrt = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return float(distance)


DISTANCE_CHUNK = 5_000  # rows and columns of one block of pairwise distances: 200 MB in float64


def _blocks(n: int, chunk: int) -> Iterator[slice]:
    return (slice(start, min(n, start + chunk)) for start in range(0, n, chunk))


def _distances(a: Tensor, b: Tensor) -> Tensor:
    return torch.cdist(a.to(torch.float64), b.to(torch.float64))


def kth_neighbour_distances(points: Tensor, k: int, chunk: int = DISTANCE_CHUNK) -> Tensor:
    """Radius of each point's k-NN ball: its distance to the k-th nearest other point of `points` (float64).

    Kept as a running (k + 1)-smallest over column blocks, so memory stays at one block whatever the count."""
    if not 1 <= k < len(points):
        raise ValueError(f"the k-th nearest neighbour needs 1 <= k < {len(points)} points, got k = {k}")
    radii = []
    for rows in _blocks(len(points), chunk):
        nearest = torch.empty(rows.stop - rows.start, 0, dtype=torch.float64, device=points.device)
        for columns in _blocks(len(points), chunk):
            candidates = torch.cat([nearest, _distances(points[rows], points[columns])], dim=1)
            nearest = candidates.topk(min(k + 1, candidates.shape[1]), dim=1, largest=False).values
        radii.append(nearest[:, k])
    return torch.cat(radii)


def nearest_neighbours(queries: Tensor, references: Tensor, chunk: int = DISTANCE_CHUNK) -> tuple[Tensor, Tensor]:
    """(distance, index) of each query's nearest reference point, float64, in blocks.

    The winners' distances are recomputed directly: cdist's fast path (|a|² + |b|² - 2ab) leaves ~1e-8 where a
    query equals a reference point, and a copy of a training image should be 0 away from it."""
    distances, indices = [], []
    for rows in _blocks(len(queries), chunk):
        best = torch.full((rows.stop - rows.start,), torch.inf, dtype=torch.float64, device=queries.device)
        where = torch.zeros_like(best, dtype=torch.long)
        for columns in _blocks(len(references), chunk):
            block_best, block_where = _distances(queries[rows], references[columns]).min(dim=1)
            closer = block_best < best
            best, where = torch.where(closer, block_best, best), torch.where(closer, block_where + columns.start, where)
        exact = (queries[rows].to(torch.float64) - references[where].to(torch.float64)).norm(dim=1)
        distances.append(exact)
        indices.append(where)
    return torch.cat(distances), torch.cat(indices)


def manifold_scores(real: Tensor, fake: Tensor, k: int, chunk: int = DISTANCE_CHUNK,
                    real_radii: Tensor | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of generated features `fake` against `real` (module docstring).

    `real_radii` may pass the real k-NN radii computed before (the real side rarely changes between calls)."""
    real, fake = real.flatten(1), fake.flatten(1)
    if real_radii is None:
        real_radii = kth_neighbour_distances(real, k, chunk)
    fake_radii = kth_neighbour_distances(fake, k, chunk)
    balls_holding = torch.zeros(len(fake), dtype=torch.long, device=fake.device)  # real balls around each fake
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)  # a fake inside the real's own ball
    recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)  # the real inside some fake ball
    for rows in _blocks(len(real), chunk):
        for columns in _blocks(len(fake), chunk):
            distances = _distances(real[rows], fake[columns])
            inside_real = distances <= real_radii[rows, None]
            balls_holding[columns] += inside_real.sum(0)
            covered[rows] |= inside_real.any(1)
            recalled[rows] |= (distances <= fake_radii[None, columns]).any(1)
    return {
        "precision": float((balls_holding > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(balls_holding.sum().double() / (k * len(fake))),
        "coverage": float(covered.double().mean()),
    }


#: PSNR of an exact copy would be infinite; per-image errors are floored here, which caps PSNR at 100 dB.
_MSE_FLOOR = 1e-10


def psnr(images: Tensor, references: Tensor, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [-1, 1] (peak = the full range, as for [0, 1]).

    10·log10(1 / MSE) with the MSE taken on intensities in [0, 1], i.e. on (images - references) / 2, over
    all pixels or only those where the boolean `mask` (broadcastable to the images) is true.
    """
    squared = ((images - references) / 2).pow(2)
    if mask is None:
        mse = squared.flatten(1).mean(dim=1)
    else:
        weights = mask.expand_as(squared).to(squared.dtype)
        mse = (squared * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1)
    return -10 * torch.log10(mse.clamp_min(_MSE_FLOOR))
