"""Does a generator copy its training images? Nearest-training-image distances of samples against those of
held-out real images, in one space (pixels or a classifier's features).

A held-out image was never trained on, so its distance to the nearest training image is what "a new image from
the data distribution" looks like. The memorisation ratio is median(nearest-training distance of samples) /
median(nearest-training distance of held-out images): about 1 for a generator that draws new images from the
data distribution, well below 1 when samples sit on top of training images (copies), above 1 for samples off
the data (blurry or broken ones). Medians, not means: a few garbage samples far from everything would move a
mean ratio upwards and hide copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.metrics.functional import DISTANCE_CHUNK, nearest_neighbours


@dataclass(frozen=True)
class NearestTraining:
    """Each query's Euclidean distance (float64) to its nearest training point, and that point's index."""

    distances: Tensor
    indices: Tensor


def nearest_training(queries: Tensor, train: Tensor, chunk: int = DISTANCE_CHUNK) -> NearestTraining:
    return NearestTraining(*nearest_neighbours(queries.flatten(1), train.flatten(1), chunk))


def median(values: Tensor) -> float:
    """The median, the mean of the two middle values for an even count (torch.median takes the lower one)."""
    return float(torch.quantile(values.to(torch.float64), 0.5))


def memorisation_scores(samples: NearestTraining, held_out: NearestTraining) -> dict[str, float]:
    """Median and minimum nearest-training distance of samples, the held-out median, and their ratio."""
    held_out_median = median(held_out.distances)
    sample_median = median(samples.distances)
    return {
        "median": sample_median,
        "min": float(samples.distances.min()),
        "held_out_median": held_out_median,
        "ratio": sample_median / held_out_median if held_out_median > 0 else float("nan"),
    }
