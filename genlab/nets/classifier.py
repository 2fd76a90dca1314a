"""Evaluation classifiers: the networks behind the classifier Inception Score and Fréchet distance.

Each network is a `body` (image in [-1, 1] → penultimate features) and a `head` (features → class logits),
so one forward pass gives both the label probabilities (IS, m-IS, label histograms) and the features
(Fréchet distance). They are trained on the data range generators produce, [-1, 1], so generated images go
in without conversion.

A genlab checkpoint of a `genlab.models.Classifier` carries the network's class and constructor settings
under `CHECKPOINT_KEY` (`classifier_spec`); `genlab.metrics.classifier_checkpoint` rebuilds the network from that
alone.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.nets.base import hidden_layers, keras_dense_init

CHECKPOINT_KEY = "genlab_classifier"


class ClassifierNet(nn.Module):
    """`body` maps images of shape `in_shape` to `feature_dim` features; `head` maps those to class logits.

    `init_args` holds the constructor settings, so a checkpoint can rebuild the network (see `load_classifier`).
    """

    in_shape: tuple[int, ...]
    num_classes: int
    feature_dim: int
    init_args: dict[str, Any]
    body: nn.Module
    head: nn.Module

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return self.head(features), features


class MLPClassifier(ClassifierNet):
    """The reference notebook's MLP: flatten → 512 ReLU → dropout → 512 ReLU → dropout → 10 (dropout 0.2).

    Features: the last hidden layer.

    Args:
        in_shape, hidden, num_classes, dropout: the layout (the reference: [1, 28, 28], [512, 512], 10, 0.2).
        xavier_init: Glorot-uniform weights and zero biases (Keras' defaults); false keeps PyTorch's default
            initialisation, as the reference PyTorch notebook does.
        input_range: "unit" reads pixel intensities in [0, 1] like the reference classifier (genlab's images in
            [-1, 1] are mapped to [0, 1] first, inside the network); "symmetric" reads [-1, 1] as they come.
    """

    def __init__(
        self,
        in_shape: list[int] = [1, 28, 28],  # noqa: B006 - jsonargparse shows list defaults in --help
        hidden: list[int] = [512, 512],  # noqa: B006
        num_classes: int = 10,
        dropout: float = 0.2,
        xavier_init: bool = True,
        input_range: Literal["symmetric", "unit"] = "symmetric",
    ) -> None:
        super().__init__()
        if not hidden:
            raise GenlabError("MLPClassifier needs at least one hidden layer (hidden: [512, 512])")
        if input_range not in ("symmetric", "unit"):
            raise GenlabError(f"MLPClassifier input_range must be 'symmetric' or 'unit', got {input_range!r}")
        self.in_shape, self.num_classes, self.feature_dim = tuple(in_shape), num_classes, hidden[-1]
        self.init_args = {"in_shape": list(in_shape), "hidden": list(hidden), "num_classes": num_classes,
                          "dropout": dropout, "xavier_init": xavier_init, "input_range": input_range}
        layers: list[nn.Module] = [nn.Flatten()] if input_range == "symmetric" else [ToIntensities(), nn.Flatten()]
        hidden_stack, width = hidden_layers(math.prod(self.in_shape), hidden, nn.ReLU, dropout=dropout)
        self.body = nn.Sequential(*layers, *hidden_stack)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))
        if xavier_init:
            self.apply(keras_dense_init)


class ToIntensities(nn.Module):
    """Images in [-1, 1] → pixel intensities in [0, 1] (for networks trained on intensities)."""

    def forward(self, x: Tensor) -> Tensor:
        return (x + 1) / 2


class ConvClassifier(ClassifierNet):
    """A small CNN: [3x3 conv → BatchNorm → ReLU → 2x2 max-pool] per entry of `channels`, then a `hidden`-wide
    ReLU layer (the features), dropout and the class logits.

    With the defaults (32, 64 channels; 128 features; 225k parameters) it passes 99% test accuracy on MNIST
    within a few epochs of Adam.
    """

    def __init__(
        self,
        in_shape: list[int] = [1, 28, 28],  # noqa: B006
        channels: list[int] = [32, 64],  # noqa: B006
        hidden: int = 128,
        num_classes: int = 10,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.in_shape, self.num_classes, self.feature_dim = tuple(in_shape), num_classes, hidden
        self.init_args = {"in_shape": list(in_shape), "channels": list(channels), "hidden": hidden,
                          "num_classes": num_classes, "dropout": dropout}
        layers: list[nn.Module] = []
        width, (height, breadth) = self.in_shape[0], self.in_shape[1:]
        for size in channels:
            if min(height, breadth) < 2:
                raise GenlabError(f"ConvClassifier: {len(channels)} pooling stages are too many for {self.in_shape}")
            layers += [nn.Conv2d(width, size, 3, padding=1, bias=False), nn.BatchNorm2d(size), nn.ReLU(),
                       nn.MaxPool2d(2)]
            width, height, breadth = size, height // 2, breadth // 2
        layers += [nn.Flatten(), nn.Linear(width * height * breadth, hidden), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))


def classifier_spec(network: ClassifierNet) -> dict[str, Any]:
    """What `load_classifier` needs besides the weights: the class path and constructor settings."""
    cls = type(network)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(network.init_args)}
