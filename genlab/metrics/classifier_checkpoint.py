"""Loading an evaluation classifier back from the checkpoint its training run wrote: the network rebuilt from the
settings the checkpoint carries (`genlab.nets.classifier.CHECKPOINT_KEY`), the file's hash and what it was trained
on, for the records of the scores it gives."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from genlab.atomic_files import file_sha256
from genlab.errors import GenlabError, first_line
from genlab.nets.classifier import CHECKPOINT_KEY, ClassifierNet
from genlab.training.checkpoints import last_checkpoint

TRAIN_HINT = "genlab fit --config experiments/classifier_mnist.yaml"


class LoadedClassifier(NamedTuple):
    """A classifier rebuilt from its checkpoint, with what a result should record about it."""

    network: ClassifierNet
    path: Path
    sha256: str  # first 12 hex digits of the checkpoint file's SHA-256
    data: str | None  # the data module it was trained on, e.g. "MNISTDataModule"
    accuracy: float | None  # its last validation accuracy, if it was validated


def _hint(path: Path, train_hint: str) -> str:
    experiment = next((part for part in path.parts if part.startswith("classifier_")), None)
    if experiment is not None and train_hint == TRAIN_HINT:
        return f"genlab fit --config experiments/{experiment.removesuffix('.ckpt')}.yaml"
    return train_hint


def load_classifier(path: str | os.PathLike, train_hint: str = TRAIN_HINT) -> LoadedClassifier:
    """Rebuild a genlab classifier from its checkpoint file, or from the newest `last.ckpt` under a folder.

    Every problem (no file, a damaged file, a checkpoint of something else) is one `GenlabError` line that
    says how to get a usable checkpoint (`train_hint`: the command that trains one).
    """
    given = Path(path).expanduser()
    file = last_checkpoint(given) if given.is_dir() else given
    if file is None or not file.is_file():
        where = f"{given} holds no last.ckpt" if given.is_dir() else f"{given} does not exist"
        raise GenlabError(f"classifier checkpoint {where}: train it with {_hint(given, train_hint)}")
    hint = _hint(file, train_hint)
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - truncated zips, unpickling: unusable
        raise GenlabError(f"classifier checkpoint {file} is truncated or corrupt ({first_line(error)}): retrain it with"
                          f" {hint}") from None
    spec = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not spec:
        raise GenlabError(
            f"{file} is not a genlab classifier checkpoint (it has no {CHECKPOINT_KEY!r} entry): pass the checkpoint"
            f" of a run of {hint}"
        )
    network = _build(spec, file, hint)
    weights = {key.removeprefix("network."): value for key, value in checkpoint.get("state_dict", {}).items()
               if key.startswith("network.")}
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        raise GenlabError(
            f"classifier checkpoint {file} does not fit its own network settings ({first_line(error)}):"
            f" retrain it with {hint}"
        ) from None
    network.eval().requires_grad_(False)
    digest = file_sha256(file)[:12]
    return LoadedClassifier(network, file.resolve(), digest, spec.get("data"), spec.get("val_accuracy"))


def _build(spec: dict[str, Any], file: Path, hint: str) -> ClassifierNet:
    module_name, _, class_name = str(spec.get("class_path", "")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, ClassifierNet)):
        raise GenlabError(f"{file} names an unknown classifier network {spec.get('class_path')!r}:"
                          f" retrain it with {hint}")
    try:
        return cls(**spec.get("init_args", {}))
    except TypeError as error:
        raise GenlabError(f"{file}: cannot rebuild {class_name} ({error}): retrain it with {hint}") from None
