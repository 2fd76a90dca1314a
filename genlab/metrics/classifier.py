"""Scores from a genlab-trained classifier (MNIST, Fashion-MNIST): IS, m-IS, a Fréchet distance on its
penultimate features and the predicted-label histogram, all from one forward pass per image.

The classifier sees images exactly as generated (float, [-1, 1], the range it was trained on): no
quantisation. The Fréchet distance here is reported as `classifier/fd`, never as FID: FID means Inception-v3
pool features, and numbers on another network are not comparable with it.
"""

from __future__ import annotations

import math
import os
from typing import Any

from torch import Tensor

from genlab.errors import GenlabError
from genlab.metrics.classifier_checkpoint import LoadedClassifier, load_classifier
from genlab.metrics.scores import (
    ClassFrechetDistances,
    FrechetDistance,
    InceptionScore,
    LabelHistogram,
    ManifoldScores,
    ModifiedInceptionScore,
)
from genlab.metrics.suite import (
    EvaluationPlan,
    MetricSuite,
    SuiteResult,
    check_manifold_counts,
    manifold_settings,
)


def worst(values: list[float], pick: Any) -> float:
    """`pick` (min or max) of the values that are numbers; NaN when none is."""
    numbers = [value for value in values if not math.isnan(value)]
    return float(pick(numbers)) if numbers else float("nan")


class ClassifierMetrics(MetricSuite):
    """IS, m-IS, Fréchet distance and label histogram from a classifier checkpoint.

    Scores: `classifier/is` (± `is_std`), `classifier/m_is` (± `m_is_std` over classes), `classifier/fd`,
    `classifier/label_tv` (total variation between the predicted-label distributions of generated and real
    images: 0 when the generator covers the classes as the data does, near 1 under mode collapse) and, for a
    conditional generator, `classifier/label_accuracy` (how often a sample is classified as the label it was
    generated for) with its worst class, `classifier/fd_worst_class` (the largest per-class Fréchet distance:
    samples asked for class c against real images of class c), and both per class in the record
    (`classifier/per_class`). With `manifold_k`, also `classifier/precision`, `recall`, `density` and `coverage` on the
    penultimate features (`genlab.metrics.functional`).

    Args:
        checkpoint: the classifier's `.ckpt`, or a folder whose newest `last.ckpt` to use (an experiment folder
            such as `lightning_logs/classifier_mnist`, or one run's folder).
        splits: IS splits. IS cannot exceed the samples per split, so each split needs at least as many samples
            as the classifier has classes.
        split_seed: seed of the permutation the IS splits are cut from (2020, torch-fidelity's); null keeps the
            sample order (Salimans et al.'s code).
        epsilon: 0 computes KL exactly; the reference notebooks add 1e-10 inside the logarithm.
        name: prefix of the score names, so two protocols can score the same samples side by side (e.g.
            `classifier/is` from genlab's CNN, `reference/is` from the notebook's MLP on its own protocol).
        manifold_k: k of the k-NN balls of precision, recall, density and coverage (3 in torch-fidelity, 5 in
            Naeem et al.); null leaves them out (they cost about three N x N distance passes per evaluation).
        scores: registered feature scores to compute on the penultimate features too (e.g. `[mean_distance]`;
            `genlab.metrics.register_feature_score` adds one).

    The reference notebooks' protocol for MNIST: the reference MLP classifier
    (`experiments/classifier_mnist_reference.yaml`), `splits: 1`, `split_seed: null`, `epsilon: 1.0e-10`.
    """

    def __init__(self, checkpoint: str = "lightning_logs/classifier_mnist", splits: int = 10,
                 split_seed: int | None = 2020, epsilon: float = 0.0, name: str = "classifier",
                 manifold_k: int | None = None, scores: list[str] | None = None) -> None:
        super().__init__()
        if splits < 1:
            raise GenlabError(f"ClassifierMetrics splits must be at least 1, got {splits}")
        if manifold_k is not None and manifold_k < 1:
            raise GenlabError(f"ClassifierMetrics manifold_k must be at least 1 (or null: off), got {manifold_k}")
        if epsilon < 0 or not name:
            raise GenlabError("ClassifierMetrics epsilon must be 0 or more and name not empty")
        self.checkpoint, self.splits, self.split_seed, self.epsilon, self.name = (checkpoint, splits, split_seed,
                                                                                  epsilon, name)
        self.manifold_k, self.scores = manifold_k, list(scores or [])
        self.manifold_counts: dict[str, int] | None = None
        self.loaded: LoadedClassifier | None = None
        self.conditional = False

    def prepare(self, plan: EvaluationPlan) -> None:
        if self.loaded is None:
            self.loaded = load_classifier(self.checkpoint)
            self.network = self.loaded.network
        net, path = self.loaded.network, self.loaded.path
        if tuple(net.in_shape) != tuple(plan.data_shape):
            raise GenlabError(f"the classifier {path} reads images of shape {tuple(net.in_shape)} but the data gives"
                              f" {tuple(plan.data_shape)}: point checkpoint at a classifier trained on this data")
        if self.loaded.data is not None and self.loaded.data != plan.data_name:
            raise GenlabError(f"the classifier {path} was trained on {self.loaded.data} but this run's data is"
                              f" {plan.data_name}: point checkpoint at a classifier trained on {plan.data_name}")
        if plan.model_classes and plan.model_classes != net.num_classes:
            raise GenlabError(f"the generator is conditioned on {plan.model_classes} classes but the classifier {path}"
                              f" knows {net.num_classes}: use a classifier of the same classes")
        if plan.num_fake < self.splits * net.num_classes:
            raise GenlabError(
                f"classifier IS over {self.splits} splits needs {net.num_classes} samples per split (IS cannot exceed"
                f" the samples per split), i.e. {self.splits * net.num_classes}, but the plan has {plan.num_fake}:"
                " raise num_samples"
            )
        if min(plan.num_fake, plan.num_real) <= net.feature_dim:
            raise GenlabError(
                f"a Fréchet distance on the classifier's {net.feature_dim} features needs more than {net.feature_dim}"
                f" images per side, but the plan has {plan.num_fake} generated and {plan.num_real} real"
                f" ({plan.real_split}) images: use more samples"
            )
        check_manifold_counts(self.manifold_k, plan)
        self.conditional = plan.model_classes > 0
        self.inception_score = InceptionScore(net.num_classes, self.splits, self.split_seed, self.epsilon)
        self.modified_score = ModifiedInceptionScore(net.num_classes)
        self.frechet = FrechetDistance(net.feature_dim)
        self.histogram = LabelHistogram(net.num_classes)
        if self.conditional:
            self.class_frechet = ClassFrechetDistances(net.num_classes, net.feature_dim)
        if self.manifold_k:
            self.manifold = ManifoldScores(net.feature_dim, self.manifold_k)
            self.manifold_counts = {"generated": plan.num_fake, "real": plan.num_real}
        self.prepare_feature_scores(net.feature_dim, plan)

    def update(self, images: Tensor, real: bool, labels: Tensor | None = None) -> None:
        logits, features = self.network.logits_and_features(images.float())
        probs = logits.double().softmax(1)
        self.frechet.update(features, real)
        if self.manifold_k:
            self.manifold.update(features, real)
        self.update_feature_scores(features, real)
        self.histogram.update(probs, real, labels if self.conditional and not real else None)
        if self.conditional and labels is not None:  # the requested labels, or the real images' own
            self.class_frechet.update(features, real, labels)
        if not real:
            self.inception_score.update(probs)
            self.modified_score.update(probs)

    def compute(self) -> SuiteResult:
        is_mean, is_std = self.inception_score.compute()
        m_mean, m_std = self.modified_score.compute()
        histogram = self.histogram.compute()
        fake, real = histogram["fake"].double(), histogram["real"].double()
        prefix = self.name
        scores = {
            f"{prefix}/is": float(is_mean), f"{prefix}/is_std": float(is_std),
            f"{prefix}/m_is": float(m_mean), f"{prefix}/m_is_std": float(m_std),
            f"{prefix}/fd": float(self.frechet.compute()),
            f"{prefix}/label_tv": float(0.5 * (fake / fake.sum() - real / real.sum()).abs().sum()),
        }
        if self.manifold_k:
            scores |= {f"{prefix}/{name}": float(value) for name, value in self.manifold.compute().items()}
        scores |= self.feature_score_results()
        joint = histogram["joint"]
        extras: dict[str, Any] = {"label_histogram": {
            "generated": fake.long().tolist(), "real": real.long().tolist(),
            "requested_vs_predicted": joint.tolist() if self.conditional else None}}
        if self.conditional:
            scores[f"{prefix}/label_accuracy"] = float(joint.diagonal().sum().double() / joint.sum())
            per_class = self.per_class_scores(joint)
            scores |= {f"{prefix}/label_accuracy_worst_class": worst(per_class["label_accuracy"], min),
                       f"{prefix}/fd_worst_class": worst(per_class["fd"], max)}
            extras[f"{prefix}/per_class"] = per_class
        return SuiteResult(scores, extras)

    def per_class_scores(self, joint: Tensor) -> dict[str, list[float]]:
        """Label accuracy and Fréchet distance of each requested class (NaN where a class has too few samples for
        a Fréchet distance): which classes a conditional generator gets wrong."""
        requested = joint.sum(1).double()
        accuracy = (joint.diagonal().double() / requested.clamp_min(1)).where(requested > 0, float("nan"))
        return {"label_accuracy": accuracy.tolist(), "fd": self.class_frechet.compute().tolist()}

    def relative_to_real(self, scores: dict[str, float], real: dict[str, float]) -> dict[str, float]:
        key = f"{self.name}/m_is"
        if key in scores and key in real:
            return {f"{self.name}/m_is_gap": abs(scores[key] - real[key])}
        return {}

    def settings(self) -> dict[str, Any]:
        loaded = self.loaded
        net = loaded.network if loaded else None
        return {
            "network": type(net).__name__ if net else None,
            "checkpoint": os.fspath(loaded.path) if loaded else self.checkpoint,
            "checkpoint_sha256": loaded.sha256 if loaded else None,
            "trained_on": loaded.data if loaded else None,
            "val_accuracy": loaded.accuracy if loaded else None,
            "input": "float images in [-1, 1] as generated (no quantisation)",
            "is": (f"exp(E KL(p(y|x) || p(y))); mean and population std (ddof 0) over {self.splits} splits cut after"
                   + (f" numpy RandomState({self.split_seed}).permutation" if self.split_seed is not None
                      else " no shuffle")
                   + (f"; KL as sum p log(p / p(y) + {self.epsilon:g})" if self.epsilon else "")),
            "splits": self.splits, "split_seed": self.split_seed, "epsilon": self.epsilon,
            "m_is": "DeLiGAN m-IS: exp(mean KL(p_i || p_j) over all pairs within a predicted class); mean and"
                    " population std over classes with >= 2 samples; no direction of its own (lowest for real"
                    " data on a confident classifier): compare m_is_gap = |m_is - m_is(real)|, lower is better",
            "fd": f"Frechet distance of Gaussians fitted to the classifier's {net.feature_dim if net else '?'}-d"
                  " penultimate features (float64, unbiased covariances); not FID",
            "label_tv": "total variation between predicted-label distributions of generated and real images",
            **manifold_settings(self.manifold_k, "the classifier's penultimate features", self.manifold_counts),
            **({"feature_scores": self.feature_score_settings()} if self.scores else {}),
        }
