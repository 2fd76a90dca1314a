"""Scores of generated samples: formulas (`functional`), accumulating `torchmetrics.Metric`s (`scores`) and the
suites `GenerativeMetrics` drives (`ClassifierMetrics`, `InceptionMetrics`)."""

from genlab.metrics.classifier import ClassifierMetrics
from genlab.metrics.inception import InceptionMetrics, random_inception_weights
from genlab.metrics.scores import (
    FrechetDistance,
    InceptionScore,
    KernelDistance,
    LabelHistogram,
    ManifoldScores,
    ModifiedInceptionScore,
)
from genlab.metrics.suite import EvaluationPlan, MetricSuite, SuiteResult

__all__ = [
    "ClassifierMetrics",
    "EvaluationPlan",
    "FrechetDistance",
    "InceptionMetrics",
    "InceptionScore",
    "KernelDistance",
    "LabelHistogram",
    "ManifoldScores",
    "MetricSuite",
    "ModifiedInceptionScore",
    "SuiteResult",
    "random_inception_weights",
]
