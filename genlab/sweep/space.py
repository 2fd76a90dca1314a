"""The search space of a sweep: configuration keys mapped to distributions, read from a YAML file.

    model.init_args.generator_optimizer.init_args.lr: {low: 1.0e-5, high: 1.0e-2, log: true}   # a float
    model.init_args.n_critic: {low: 1, high: 5}                                                 # an int (int bounds)
    model.init_args.loss: {choices: [non_saturating, least_squares, hinge]}                     # a category

Each key is a dotted configuration key as `genlab fit --print_config` shows it; a sampled value reaches the trial's
run as `--<key>=<value>`, so it lands in the run's config.yaml like any command-line setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genlab.errors import GenlabError


@dataclass(frozen=True)
class Dimension:
    """One key of the space: a float or int range (`log` for a log-uniform draw), or a list of choices."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this key."""
        if self.choices is not None:
            if all(choice is None or isinstance(choice, (bool, int, float, str)) for choice in self.choices):
                return trial.suggest_categorical(self.key, list(self.choices))
            # Optuna's categories are scalars: a list such as Adam's betas is drawn as its JSON text
            drawn = trial.suggest_categorical(self.key, [json.dumps(list(c) if isinstance(c, tuple) else c)
                                                         for c in self.choices])
            return json.loads(drawn)
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]


def parse_dimension(key: str, spec: Any, source: str) -> Dimension:
    """One entry of the space file, with one line for each way it can be wrong."""
    if not isinstance(spec, dict):
        raise GenlabError(f"{source}: {key} must map to {{low, high}} or {{choices: [...]}}, got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "choices"}
    if unknown:
        raise GenlabError(f"{source}: {key} has {', '.join(sorted(unknown))}; use low, high and log, or choices")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or set(spec) != {"choices"}:
            raise GenlabError(f"{source}: {key} needs a non-empty list of choices and nothing else, got {spec!r}")
        return Dimension(key, choices=tuple(tuple(c) if isinstance(c, list) else c for c in choices))
    low, high, log = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
    if not all(isinstance(bound, (int, float)) and not isinstance(bound, bool) for bound in (low, high)):
        raise GenlabError(f"{source}: {key} needs numbers low and high, got low {low!r}, high {high!r}")
    if not low < high:  # type: ignore[operator]
        raise GenlabError(f"{source}: {key} has an empty or reversed range (low {low}, high {high}): low must be"
                          " below high")
    if log and low <= 0:  # type: ignore[operator]
        raise GenlabError(f"{source}: {key} is log-uniform, so low must be above 0 (got {low})")
    return Dimension(key, low, high, log)


def read_space(path: Path, known_keys: set[str]) -> list[Dimension]:
    """The dimensions of the space file `path`; a key the configuration does not have is one line naming the
    closest keys it does have."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise GenlabError(f"cannot read the search space {path} ({type(error).__name__}): give a readable YAML"
                          " file") from None
    if not isinstance(raw, dict) or not raw:
        raise GenlabError(f"{path} holds no search space: map configuration keys to {{low, high}} or {{choices}}")
    dimensions = [parse_dimension(str(key), spec, str(path)) for key, spec in raw.items()]
    for dimension in dimensions:
        if dimension.key not in known_keys:
            leaf = dimension.key.rsplit(".", 1)[-1]
            near = sorted(key for key in known_keys if key.rsplit(".", 1)[-1] == leaf)[:3]
            hint = f" (keys ending in {leaf!r}: {', '.join(near)})" if near else ""
            raise GenlabError(f"{path}: {dimension.key} is not a setting of this configuration{hint}: use a key as"
                              " `genlab fit --config ... --print_config` shows it")
    return dimensions


def command_line_value(value: Any) -> str:
    """A sampled value as a command-line setting (JSON is YAML, which the CLI parses)."""
    return value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple) else value)
