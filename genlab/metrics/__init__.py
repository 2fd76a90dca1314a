"""Scores of generated samples: formulas (`functional`), accumulating `torchmetrics.Metric`s (`scores`) and the
suites `GenerativeMetrics` drives (`ClassifierMetrics`, `InceptionMetrics`)."""

from genlab.metrics.classifier import ClassifierMetrics
from genlab.metrics.inception import InceptionMetrics, random_inception_weights
from genlab.metrics.scores import (
    FEATURE_SCORES,
    FeatureScore,
    FrechetDistance,
    InceptionScore,
    KernelDistance,
    LabelHistogram,
    ManifoldScores,
    MeanDistance,
    ModifiedInceptionScore,
    RealFakeMetric,
    register_feature_score,
)
from genlab.metrics.suite import EvaluationPlan, MetricSuite, SuiteResult

__all__ = [
    "FEATURE_SCORES",
    "ClassifierMetrics",
    "EvaluationPlan",
    "FeatureScore",
    "FrechetDistance",
    "InceptionMetrics",
    "InceptionScore",
    "KernelDistance",
    "LabelHistogram",
    "ManifoldScores",
    "MeanDistance",
    "MetricSuite",
    "ModifiedInceptionScore",
    "RealFakeMetric",
    "SuiteResult",
    "random_inception_weights",
    "register_feature_score",
]
