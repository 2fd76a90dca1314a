"""The training stream of random numbers, and keeping evaluation out of it.

Training draws noise, shuffles and dropout masks from the global torch / NumPy / Python generators. Anything
that only looks at the model (sample grids, scores, plots) must leave those generators exactly where it found
them, or a scored run ends with other weights than the same run unscored. `isolated_rng` saves every global
generator state and puts it back afterwards, whatever the code inside draws (a network built with its default
initialisation, a data module's setup, a library's own randomness); `keeps_training_rng` applies it to a
callback hook.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

Hook = TypeVar("Hook", bound=Callable[..., Any])


def collect_rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python RNG states, as tensors and ints only.

    Lightning loads checkpoints with `torch.load(weights_only=True)`, which refuses NumPy arrays, so the
    NumPy state travels as a tensor.
    """
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Run the body, then put every global generator back where it was (also when the body raises)."""
    states = collect_rng_states()
    try:
        yield
    finally:
        restore_rng_states(states)


def keeps_training_rng(hook: Hook) -> Hook:
    """A callback hook (or any method) that runs under `isolated_rng`."""

    @functools.wraps(hook)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with isolated_rng():
            return hook(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
