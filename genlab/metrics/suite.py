"""A metric suite: one feature network and the scores computed from its outputs, so that each image goes
through the network once however many scores use it (torchmetrics' own FID, IS and KID each run their own
Inception-v3).

`genlab.callbacks.GenerativeMetrics` drives suites through this interface: `prepare` (in `setup`, before any
training: load the network, refuse sample counts too small to mean anything), `update` with batches of real
and generated images in [-1, 1], `compute`, `reset`. `settings()` is what defines the scores (network,
checkpoint, splits, resize path, …) and is written beside every result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from genlab.errors import GenlabError


@dataclass(frozen=True)
class EvaluationPlan:
    """What a suite is about to be fed, known before training starts."""

    data_shape: tuple[int, ...]
    data_name: str  # the data module's class name, e.g. "MNISTDataModule"
    data_classes: int  # label classes of the data (0 when unlabelled)
    model_classes: int  # classes the generator is conditioned on (0 when unconditional)
    num_fake: int
    num_real: int
    real_split: str


@dataclass
class SuiteResult:
    """Scores by name (`<suite>/<score>`, with `<score>_std` where the score has a spread) and other outputs."""

    scores: dict[str, float]
    extras: dict[str, Any]


class MetricSuite(nn.Module):
    """Base class; `name` prefixes the suite's score names (`classifier/is`, `inception/fid`)."""

    name: str = "suite"

    def prepare(self, plan: EvaluationPlan) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, images: Tensor, real: bool, labels: Tensor | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def compute(self) -> SuiteResult:  # pragma: no cover - interface
        raise NotImplementedError

    def reset(self, keep_real: bool = False) -> None:
        """Forget the generated side; the real side too unless `keep_real`."""
        for metric in self.metrics():
            if hasattr(metric, "keep_real"):
                metric.keep_real = keep_real
            metric.reset()

    def metrics(self) -> list[nn.Module]:
        from torchmetrics import Metric

        return [module for module in self.children() if isinstance(module, Metric)]

    def settings(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def relative_to_real(self, scores: dict[str, float], real: dict[str, float]) -> dict[str, float]:
        """Scores that only mean something against their real-data value (`real`: the same suite's scores of real
        images), e.g. the classifier's `m_is_gap`; none by default."""
        return {}


def check_manifold_counts(k: int | None, plan: EvaluationPlan) -> None:
    """k-NN balls need more than k points on each side; refused before training, with the minimum."""
    if k and min(plan.num_fake, plan.num_real) <= k:
        raise GenlabError(f"precision/recall/density/coverage with manifold_k = {k} need more than {k} images per"
                          f" side, but the plan has {plan.num_fake} generated and {plan.num_real} real"
                          f" ({plan.real_split}) images: use more samples or a smaller manifold_k")


def manifold_settings(k: int | None, features: str, counts: dict[str, int] | None) -> dict[str, Any]:
    """What precision, recall, density and coverage rest on, for a suite's settings (nothing when they are off)."""
    if not k:
        return {}
    return {
        "manifold_k": k, "manifold_counts": counts,
        "manifold": f"k-NN balls (k = {k}, closed, radius to the k-th nearest other point) on {features}, float64"
                    " distances; precision/recall: Kynkaanniemi et al. 2019 (torch-fidelity >= 0.4 orientation:"
                    " precision = share of generated inside real balls); density/coverage: Naeem et al. 2020",
    }
