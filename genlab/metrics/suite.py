"""A metric suite: one feature network and the scores computed from its outputs, so that each image goes
through the network once however many scores use it (torchmetrics' own FID, IS and KID each run their own
Inception-v3).

`genlab.callbacks.GenerativeMetrics` drives suites through this interface: `prepare` (in `setup`, before any
training: load the network, refuse sample counts too small to mean anything), `update` with batches of real
and generated images in [-1, 1], `compute`, `reset`. `settings()` is what defines the scores (network,
checkpoint, splits, resize path, …) and is written beside every result.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.metrics.scores import FEATURE_SCORES, RealFakeMetric


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
    """Base class; `name` prefixes the suite's score names (`classifier/is`, `inception/fid`).

    A suite with a feature network also computes the registered feature scores its `scores` setting names
    (`genlab.metrics.scores.register_feature_score`): `prepare_feature_scores` in `prepare`,
    `update_feature_scores` with each batch's features, `feature_score_results` in `compute`.
    """

    name: str = "suite"
    download: bool = False  # whether `prepare` may fetch files (`genlab doctor` turns it off)

    def __init__(self) -> None:
        super().__init__()
        self.scores: list[str] = []  # the registered feature scores asked for (a suite's `scores` setting)
        self.feature_scores = nn.ModuleDict()  # built from them in `prepare_feature_scores`

    def prepare(self, plan: EvaluationPlan) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, images: Tensor, real: bool, labels: Tensor | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def compute(self) -> SuiteResult:  # pragma: no cover - interface
        raise NotImplementedError

    def reset(self, keep_real: bool = False) -> None:
        """Forget the generated side; the real side too unless `keep_real`."""
        for metric in self.metrics():
            if isinstance(metric, RealFakeMetric):
                metric.keep_real = keep_real
            metric.reset()

    def metrics(self) -> list[nn.Module]:
        from torchmetrics import Metric

        return [module for module in self.modules() if isinstance(module, Metric)]

    # --- registered feature scores ------------------------------------------------------------------------

    def prepare_feature_scores(self, num_features: int, plan: EvaluationPlan) -> None:
        """The scores named in `self.scores`, on `num_features`-d features; unknown names and too few samples are
        refused here, before training. `module:name` imports `module` first (where a score of one's own is
        registered), so a YAML can name it."""
        names = [register_from(entry) for entry in self.scores]
        unknown = [name for name in names if name not in FEATURE_SCORES]
        if unknown:
            raise GenlabError(f"{type(self).__name__} scores {unknown} are not registered feature scores; known:"
                              f" {sorted(FEATURE_SCORES)} (add one with genlab.metrics.register_feature_score, and"
                              " name it module:name so genlab imports the module)")
        self.feature_scores = nn.ModuleDict({name: FEATURE_SCORES[name](num_features) for name in names})
        for name, score in self.feature_scores.items():
            if min(plan.num_fake, plan.num_real) < score.minimum_per_side:
                raise GenlabError(f"{self.name}/{name} needs at least {score.minimum_per_side} images per side, but"
                                  f" the plan has {plan.num_fake} generated and {plan.num_real} real: use more samples")

    def update_feature_scores(self, features: Tensor, real: bool) -> None:
        for score in self.feature_scores.values():
            score.update(features, real)

    def feature_score_results(self) -> dict[str, float]:
        return {f"{self.name}/{name}": float(score.compute())
                for name, score in self.feature_scores.items()}

    def feature_score_settings(self) -> dict[str, Any]:
        return {name: type(score).description for name, score in self.feature_scores.items()}


def register_from(entry: str) -> str:
    """A `scores` entry's score name, after importing the module of a `module:name` entry (which registers it)."""
    module, _, name = entry.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise GenlabError(f"score {entry!r}: cannot import {module} ({error}): put it on PYTHONPATH") from None
    return name

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
