"""The scores as `torchmetrics.Metric`s: they accumulate over batches and synchronise across DDP processes.

Probability tables and features are gathered with `dist_reduce_fx="cat"` (the IS splits, m-IS classes and
KID subsets need every sample, in order: process r's samples follow process r-1's, so a run on W processes
that feeds process r the r-th contiguous share gives the single-process numbers); Fréchet statistics and
label counts are sums. `keep_real=True` keeps the real side across `reset()`, so a fixed reference set is
read once per run. The formulas and their conventions are in `genlab.metrics.functional`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from genlab.errors import GenlabError
from genlab.metrics.functional import (
    DISTANCE_CHUNK,
    frechet_distance,
    gaussian_statistics,
    inception_score,
    kth_neighbour_distances,
    manifold_scores,
    modified_inception_score,
)


class _GatheredRows(Metric):
    """A metric whose list states hold rows (N x width) gathered from every process with `dist_reduce_fx="cat"`.

    Each list starts with an empty 0 x width tensor, so that a process that was fed nothing (more processes
    than generated batches) still takes part in the gather: torchmetrics skips the collective for an empty list,
    and one process skipping a collective the others enter breaks the sync.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self._row_states: dict[str, tuple[int, torch.dtype]] = {}

    def add_rows(self, name: str, width: int, dtype: torch.dtype) -> None:
        self.add_state(name, default=[], dist_reduce_fx="cat")
        self._row_states[name] = (width, dtype)
        self._add_placeholders()

    def _add_placeholders(self) -> None:
        for name, (width, dtype) in self._row_states.items():
            rows = getattr(self, name)
            if not rows:
                rows.append(torch.zeros(0, width, dtype=dtype, device=self.device))

    def reset(self) -> None:
        super().reset()
        self._add_placeholders()


class RealFakeMetric(_GatheredRows):
    """A metric of generated against real samples: the base of every such score, genlab's and one's own.

    `keep_real` (set by the evaluation, which feeds a fixed reference set once per run) keeps the states named in
    `real_states` through `reset()`, so only the generated side is fed again. List states added with `add_rows`
    are gathered from every process in rank order, so N processes give the numbers of one.
    """

    real_states: tuple[str, ...] = ()  # the states that hold the real side

    def __init__(self, keep_real: bool = False) -> None:
        super().__init__()
        self.keep_real = keep_real

    def reset(self) -> None:
        # copies: torchmetrics empties list states in place on reset
        kept = {name: copy.copy(getattr(self, name)) for name in self.real_states} if self.keep_real else {}
        Metric.reset(self)
        for name, value in kept.items():
            setattr(self, name, value)
        self._add_placeholders()


class _ProbabilityTable(_GatheredRows):
    """Collects N x C class probabilities p(y|x) of generated samples (float64)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.add_rows("probs", num_classes, torch.float64)

    def update(self, probs: Tensor) -> None:
        self.probs.append(probs.detach().to(torch.float64))

    def table(self) -> Tensor:
        return dim_zero_cat(self.probs)


class InceptionScore(_ProbabilityTable):
    """exp(E[KL(p(y|x) || p(y))]) as (mean, population std) over `splits` parts cut after a permutation seeded
    `seed` (torch-fidelity's convention; `seed=None` keeps the given order, as Salimans et al.'s code);
    `epsilon` as in `genlab.metrics.functional.kl_to_marginal`."""

    higher_is_better = True

    def __init__(self, num_classes: int, splits: int = 10, seed: int | None = 2020, epsilon: float = 0.0) -> None:
        super().__init__(num_classes)
        if splits < 1:
            raise GenlabError(f"InceptionScore splits must be at least 1, got {splits}")
        self.splits, self.seed, self.epsilon = splits, seed, epsilon

    def compute(self) -> tuple[Tensor, Tensor]:
        probs = self.table()
        if len(probs) < self.splits:
            raise GenlabError(f"the Inception Score of {len(probs)} samples in {self.splits} splits is meaningless:"
                              " draw more samples")
        mean, std = inception_score(probs, self.splits, self.seed, self.epsilon)
        return torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)


class ModifiedInceptionScore(_ProbabilityTable):
    """m-IS (DeLiGAN): exp(E_{i,j} KL(p(y|x_i) || p(y|x_j))) within each predicted class, (mean, std) over classes.

    No direction: compare it with its real-data value (see `genlab.metrics.functional`)."""

    higher_is_better = None

    def compute(self) -> tuple[Tensor, Tensor]:
        mean, std = modified_inception_score(self.table())
        return torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)


class FrechetDistance(RealFakeMetric):
    """Fréchet distance between Gaussians fitted to real and generated features (float64 sums).

    Refuses to compute unless each side has more samples than feature dimensions: below that the covariance
    is singular and the number is dominated by the estimate's bias (or comes out negative/complex).
    """

    higher_is_better = False
    real_states = ("real_sum", "real_outer", "real_count")

    def __init__(self, num_features: int, keep_real: bool = False) -> None:
        super().__init__(keep_real)
        self.num_features = num_features
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(num_features, num_features, dtype=torch.float64),
                           dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, features: Tensor, real: bool) -> None:
        features = features.detach().to(torch.float64).flatten(1)
        if features.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} features per sample, got {features.shape[1]}")
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + features.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + features.T @ features)
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + len(features))

    def compute(self) -> Tensor:
        counts = {side: int(getattr(self, f"{side}_count")) for side in ("real", "fake")}
        if min(counts.values()) <= self.num_features:
            raise GenlabError(
                f"a Fréchet distance on {self.num_features} features needs more than {self.num_features} samples per"
                f" side, got {counts['fake']} generated and {counts['real']} real: use more samples"
            )
        real = gaussian_statistics(self.real_sum, self.real_outer, counts["real"])
        fake = gaussian_statistics(self.fake_sum, self.fake_outer, counts["fake"])
        return torch.tensor(frechet_distance(*fake, *real), dtype=torch.float64)


class ClassFrechetDistances(RealFakeMetric):
    """One Fréchet distance per class for a conditional generator: its samples of class c (the label it was asked
    for) against the real images of class c, from per-class float64 sums.

    A class with no more samples than feature dimensions on either side gets NaN (a singular covariance gives no
    meaningful number), so a small evaluation reports what it can instead of failing.
    """

    higher_is_better = False
    real_states = ("real_sum", "real_outer", "real_count")

    def __init__(self, num_classes: int, num_features: int, keep_real: bool = False) -> None:
        super().__init__(keep_real)
        self.num_classes, self.num_features = num_classes, num_features
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(num_classes, num_features, dtype=torch.float64),
                           dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(num_classes, num_features, num_features,
                                                        dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, features: Tensor, real: bool, labels: Tensor) -> None:
        features, labels = features.detach().to(torch.float64).flatten(1), labels.long()
        side = "real" if real else "fake"
        one_hot = torch.nn.functional.one_hot(labels, self.num_classes).to(torch.float64)  # N x C
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + one_hot.T @ features)
        outer = torch.einsum("nc,ni,nj->cij", one_hot, features, features)
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + outer)
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + one_hot.sum(0).long())

    def compute(self) -> Tensor:
        distances = torch.full((self.num_classes,), float("nan"), dtype=torch.float64)
        for c in range(self.num_classes):
            real_count, fake_count = int(self.real_count[c]), int(self.fake_count[c])
            if min(real_count, fake_count) > self.num_features:
                real = gaussian_statistics(self.real_sum[c], self.real_outer[c], real_count)
                fake = gaussian_statistics(self.fake_sum[c], self.fake_outer[c], fake_count)
                distances[c] = frechet_distance(*fake, *real)
        return distances


class KernelDistance(RealFakeMetric):
    """Kernel Inception Distance (Bińkowski et al.): the unbiased MMD² with the cubic polynomial kernel
    k(x, y) = (x·y / d + 1)³, as (mean, population std) over `subsets` random subsets of `subset_size` per side.

    Computed by torch-fidelity's own `kid_features_to_metric` (its subset draws seeded `seed`), so the numbers
    are the reference implementation's.
    """

    higher_is_better = False
    real_states = ("real_features",)

    def __init__(self, num_features: int, subsets: int = 100, subset_size: int = 1000, seed: int = 2020,
                 keep_real: bool = False) -> None:
        super().__init__(keep_real)
        if subsets < 1 or subset_size < 2:
            raise GenlabError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        self.add_rows("real_features", num_features, torch.float32)
        self.add_rows("fake_features", num_features, torch.float32)

    def update(self, features: Tensor, real: bool) -> None:
        (self.real_features if real else self.fake_features).append(features.detach().flatten(1).float())

    def compute(self) -> tuple[Tensor, Tensor]:
        from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

        real, fake = dim_zero_cat(self.real_features).cpu(), dim_zero_cat(self.fake_features).cpu()
        if min(len(real), len(fake)) < self.subset_size:
            raise GenlabError(
                f"KID subsets of {self.subset_size} need at least that many samples per side, got {len(fake)} generated"
                f" and {len(real)} real: use more samples or a smaller kid_subset_size"
            )
        result: dict[str, Any] = kid_features_to_metric(
            fake, real, kid_subsets=self.subsets, kid_subset_size=self.subset_size, rng_seed=self.seed, verbose=False
        )
        return (torch.tensor(result[KEY_METRIC_KID_MEAN], dtype=torch.float64),
                torch.tensor(result[KEY_METRIC_KID_STD], dtype=torch.float64))


class ManifoldScores(RealFakeMetric):
    """Precision and recall of k-NN manifolds (Kynkäänniemi et al. 2019) with density and coverage (Naeem et al.
    2020) of generated features against real ones; formulas and conventions in `genlab.metrics.functional`.

    Both sides are gathered whole (the k-NN balls need every point). The real side's k-NN radii are kept until
    the real side changes, so repeated evaluations against a fixed reference pay for them once.
    """

    higher_is_better = True
    real_states = ("real_features",)

    def __init__(self, num_features: int, k: int = 3, keep_real: bool = False, chunk: int = DISTANCE_CHUNK) -> None:
        super().__init__(keep_real)
        if k < 1 or chunk < 1:
            raise GenlabError(f"k-NN manifold scores need k >= 1 and chunk >= 1, got k = {k} and chunk = {chunk}")
        self.k, self.chunk = k, chunk
        self.add_rows("real_features", num_features, torch.float32)
        self.add_rows("fake_features", num_features, torch.float32)
        self._real_radii: Tensor | None = None

    def update(self, features: Tensor, real: bool) -> None:
        if real:
            self._real_radii = None  # the real side changes: its radii too
        (self.real_features if real else self.fake_features).append(features.detach().flatten(1).float())

    def reset(self) -> None:
        if not self.keep_real:  # also on a process that will receive no real batch of the next real side
            self._real_radii = None
        super().reset()

    def compute(self) -> dict[str, Tensor]:
        real, fake = dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features)
        if min(len(real), len(fake)) <= self.k:
            raise GenlabError(f"k-NN manifold scores with k = {self.k} need more than {self.k} samples per side, got"
                              f" {len(fake)} generated and {len(real)} real: use more samples or a smaller k")
        if self._real_radii is None:
            self._real_radii = kth_neighbour_distances(real, self.k, self.chunk)
        scores = manifold_scores(real, fake, self.k, self.chunk, self._real_radii)
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in scores.items()}


class LabelHistogram(RealFakeMetric):
    """Counts of predicted labels for generated and real images; for a conditional generator also the counts
    of (requested label, predicted label) pairs, whose diagonal is how often a sample shows what was asked."""

    real_states = ("real_counts",)

    def __init__(self, num_classes: int, keep_real: bool = False) -> None:
        super().__init__(keep_real)
        self.num_classes = num_classes
        self.add_state("fake_counts", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("real_counts", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("joint", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: Tensor, real: bool, requested: Tensor | None = None) -> None:
        predicted = probs.argmax(1)
        counts = torch.bincount(predicted, minlength=self.num_classes)
        if real:
            self.real_counts = self.real_counts + counts
            return
        self.fake_counts = self.fake_counts + counts
        if requested is not None:
            pairs = requested.long() * self.num_classes + predicted
            self.joint = self.joint + torch.bincount(pairs, minlength=self.num_classes**2).view(self.num_classes, -1)

    def compute(self) -> dict[str, Tensor]:
        return {"fake": self.fake_counts.clone(), "real": self.real_counts.clone(), "joint": self.joint.clone()}


class FeatureScore(RealFakeMetric):
    """A score of generated against real features that any suite with a feature network computes when its
    `scores` setting names it (`ClassifierMetrics(scores=[...])`, `InceptionMetrics(scores=[...])`).

    A new one is a subclass (`__init__(num_features)`, `update(features, real)`, `compute()` returning a 0-d tensor,
    `description` for the records) and one line, `register_feature_score("name", Class)`; its result is named
    `<suite>/<name>` and its description goes into the suite's settings, the protocol a record is compared by.
    """

    description: str = ""  # what the number is, written into every record beside it
    minimum_per_side: int = 2  # fewer samples on a side are refused before training starts

    def __init__(self, num_features: int) -> None:
        super().__init__(keep_real=False)
        self.num_features = num_features


FEATURE_SCORES: dict[str, type[FeatureScore]] = {}


def register_feature_score(name: str, score: type[FeatureScore]) -> None:
    """Make `score` available to every suite under `name` (a suite's `scores: [name]`)."""
    if not name or "/" in name or "@" in name:
        raise GenlabError(f"a feature score's name must be a plain word (no '/' or '@'), got {name!r}")
    FEATURE_SCORES[name] = score


class MeanDistance(FeatureScore):
    """||mean(real) - mean(generated)||² of the features: the first term of the Fréchet distance alone, which
    says how much of a distance is a shift of the mean rather than of the spread (float64 sums)."""

    description = "squared Euclidean distance between the real and generated feature means (float64)"
    higher_is_better = False
    real_states = ("real_sum", "real_count")

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, features: Tensor, real: bool) -> None:
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + features.detach().to(torch.float64).sum(0))
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + len(features))

    def compute(self) -> Tensor:
        return (self.real_sum / self.real_count - self.fake_sum / self.fake_count).square().sum()


register_feature_score("mean_distance", MeanDistance)
