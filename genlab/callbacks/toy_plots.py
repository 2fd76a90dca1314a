"""Watching a 2-D GAN learn: point clouds, the discriminator's 2-D feature space, the losses, and numbers.

At the start, every `every_n_iterations` training batches and at the end, ToyGANPlots (rank 0 only) draws
into the run folder's `toy/` (and TensorBoard's images)
- `points_iteration_N.png`: held-out real points vs generated points from one fixed noise batch, over the
  curve y = a·x² + b when the data module has one;
- `features_iteration_N.png`: the same real and generated points mapped by `discriminator.features` (its
  2-unit last hidden layer, which the score is linear in);
and at the end `losses.png`: the discriminator and generator losses averaged over each window of
`record_every_n_iterations` batches, beside the values they take when the discriminator cannot tell real
from generated. At the start and every `record_every_n_iterations` batches it logs `toy/curve_distance` (mean
Euclidean distance of the generated points to the curve) and `toy/sliced_wasserstein` (SW₂ between generated
and held-out real points) to the loggers, and writes them with the window's mean losses to
`toy/metrics.jsonl`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from torch import Tensor

from genlab import run_layout
from genlab.atomic_files import append_jsonl
from genlab.callbacks.run_files import figure_to_image, run_dir, save_artifact
from genlab.data.base import TensorDataModule
from genlab.errors import GenlabError
from genlab.metrics.toy import mean_distance_to_parabola, sliced_wasserstein
from genlab.models.base import GenerativeModule, evaluation_mode
from genlab.rng import keeps_training_rng
from genlab.runtime import iterations_done

LOSS_KEYS = {"loss_d": "loss/d", "loss_g": "loss/g"}
_DPI = 100
_REAL, _FAKE = "tab:blue", "tab:orange"


def equilibrium_losses(loss: Any) -> tuple[float, float] | None:
    """(D loss, G loss) when the discriminator cannot tell real from fake and outputs its best constant score.

    That constant minimises the discriminator loss on equal real and fake scores: logit 0 for the minimax
    family (D = ½: losses 2·log 2 and log 2), ½ for least squares. Wasserstein and hinge have no unique one
    (their loss is flat there), so no reference is drawn for them.
    """
    scores = torch.linspace(-4.0, 4.0, 8001, dtype=torch.float64)
    try:
        d_losses = torch.vmap(lambda s: loss.discriminator(s, s))(scores[:, None])
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    best = d_losses.min()
    flat = scores[d_losses <= best + 1e-9]
    if float(flat.max() - flat.min()) > 0.01:
        return None
    score = scores[d_losses.argmin()].reshape(1)
    return float(best), float(loss.generator(score))


@runtime_checkable
class ShowsCriticFeatures(Protocol):
    """What the toy plots need of a GAN beyond sampling: its critic's 2-D view of points, and its adversarial loss
    (for the loss curves' equilibrium lines). `genlab.models.GAN` has both."""

    loss: Any

    def critic_features(self, points: Tensor) -> Tensor: ...

    def critic_feature_problem(self) -> str | None: ...


class ToyGANPlots(L.Callback):
    """Plots and fit measures for a GAN on 2-D data (see the module docstring for the files and metrics).

    Needs a data module with `data_shape` (2,) and held-out (validation) points, and a model with a
    `discriminator` whose `features(x)` is 2 units wide (`ToyDiscriminator`); both are checked at setup.

    Args:
        every_n_iterations: batches between point and feature plots (a batch = one discriminator step).
        record_every_n_iterations: batches per loss-averaging window and between fit measurements.
        num_points: real (from the validation split) and generated points per plot and measurement.
        num_directions: projection directions of the sliced Wasserstein distance.
        plot_size: side of the point and feature plots in pixels (the loss plot is twice as wide).
        seed: seed of the fixed noise batch.
    """

    def __init__(
        self,
        every_n_iterations: int = 1000,
        record_every_n_iterations: int = 50,
        num_points: int = 1000,
        num_directions: int = 64,
        plot_size: int = 480,
        seed: int = 0,
    ) -> None:
        if min(every_n_iterations, record_every_n_iterations, num_points, num_directions) < 1 or plot_size < 100:
            raise GenlabError(
                "ToyGANPlots every_n_iterations, record_every_n_iterations, num_points and num_directions must"
                " be at least 1 and plot_size at least 100"
            )
        self.every_n_iterations, self.record_every_n_iterations = every_n_iterations, record_every_n_iterations
        self.num_points, self.num_directions = num_points, num_directions
        self.plot_size, self.seed = plot_size, seed
        self.noise: Tensor | None = None
        self.real: Tensor | None = None
        self.curve: tuple[float, float] | None = None
        self.floor = math.nan
        columns = ("iteration", *LOSS_KEYS, "curve_distance", "sliced_wasserstein")
        self.records: dict[str, list[float]] = {key: [] for key in columns}
        self._window = {key: [0.0, 0] for key in LOSS_KEYS}
        self._last_plotted = self._last_recorded = -1

    # --- setup: fail before training, not at iteration 1000 -------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not isinstance(pl_module, GenerativeModule) or not isinstance(pl_module, ShowsCriticFeatures):
            raise GenlabError(
                f"ToyGANPlots needs a GAN (genlab.models.GAN); {type(pl_module).__name__} has no discriminator"
            )
        if (problem := pl_module.critic_feature_problem()) is not None:
            raise GenlabError(f"ToyGANPlots draws the discriminator's 2-D feature space, but {problem}")
        datamodule = trainer.datamodule
        if tuple(getattr(datamodule, "data_shape", ())) != (2,) or not isinstance(datamodule, TensorDataModule):
            raise GenlabError(
                "ToyGANPlots needs 2-D points from a genlab data module such as genlab.data.QuadraticDataModule,"
                f" not {type(datamodule).__name__}"
            )
        train, val = datamodule.split("train").samples, datamodule.split("val").samples
        if min(len(train), len(val)) < self.num_points:
            raise GenlabError(
                f"ToyGANPlots compares num_points={self.num_points} generated points with as many real ones, but"
                f" the data has {len(train)} training and {len(val)} validation points: raise data.val_size (and"
                " data.train_size) or lower num_points"
            )
        self.real = val[: self.num_points].detach().float().cpu()
        a, b = getattr(datamodule, "a", None), getattr(datamodule, "b", None)
        self.curve = (float(a), float(b)) if a is not None and b is not None else None
        # two finite samples of one distribution are not at distance 0: the best a generator can show
        self.floor = sliced_wasserstein(self.real, train[: self.num_points], self.num_directions)
        if self.noise is None:
            self.noise = pl_module.sample_latent(self.num_points, torch.Generator().manual_seed(self.seed)).cpu()

    # --- what is drawn and measured (public so tests can check the plotted data itself) ------------------
    def generated(self, model: GenerativeModule) -> Tensor:
        """Points decoded from the fixed noise batch, on the CPU."""
        assert self.noise is not None, "ToyGANPlots.setup has not run"
        with evaluation_mode(model):
            return model.decode(self.noise.to(model.device)).float().cpu()

    def feature_arrays(self, model: GenerativeModule) -> tuple[np.ndarray, np.ndarray]:
        """The discriminator's 2-D features of the real and of the generated points, as plotted."""
        assert self.real is not None, "ToyGANPlots.setup has not run"
        assert isinstance(model, ShowsCriticFeatures)
        fake = self.generated(model)
        with evaluation_mode(model):
            real_features = model.critic_features(self.real.to(model.device))
            fake_features = model.critic_features(fake.to(model.device))
        return real_features.double().cpu().numpy(), fake_features.double().cpu().numpy()

    def measure(self, model: GenerativeModule) -> dict[str, float]:
        """Mean Euclidean distance of generated points to the curve (NaN without one) and SW₂ to real points."""
        assert self.real is not None, "ToyGANPlots.setup has not run"
        fake = self.generated(model)
        return {
            "curve_distance": mean_distance_to_parabola(fake, *self.curve) if self.curve is not None else math.nan,
            "sliced_wasserstein": sliced_wasserstein(fake, self.real, self.num_directions),
        }

    # --- figures --------------------------------------------------------------------------------------------
    def _figure(self, width: int, height: int) -> Figure:
        return Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")

    def points_figure(self, model: GenerativeModule, iteration: int) -> Figure:
        assert self.real is not None
        real, fake = self.real.numpy(), self.generated(model).numpy()
        figure = self._figure(self.plot_size, self.plot_size)
        axes = figure.add_subplot()
        both = np.concatenate([real, fake])
        low, high = both.min(axis=0), both.max(axis=0)
        margin = 0.05 * np.maximum(high - low, 1e-3)
        if self.curve is not None:
            a, b = self.curve
            x = np.linspace(low[0] - margin[0], high[0] + margin[0], 400)
            axes.plot(x, a * x**2 + b, color="0.6", linewidth=1, label=f"y = {a:g}·x² + {b:g}", zorder=0)
        axes.scatter(real[:, 0], real[:, 1], s=4, color=_REAL, label="real (held out)")
        axes.scatter(fake[:, 0], fake[:, 1], s=4, color=_FAKE, label="generated")
        axes.set(xlim=(low[0] - margin[0], high[0] + margin[0]), ylim=(low[1] - margin[1], high[1] + margin[1]))
        axes.set(xlabel="x", ylabel="y", title=f"iteration {iteration}")
        axes.legend(loc="upper center", fontsize="small", markerscale=3)
        return figure

    def features_figure(self, model: GenerativeModule, iteration: int) -> Figure:
        real, fake = self.feature_arrays(model)
        figure = self._figure(self.plot_size, self.plot_size)
        axes = figure.add_subplot()
        axes.scatter(real[:, 0], real[:, 1], s=4, color=_REAL, label="real")
        axes.scatter(fake[:, 0], fake[:, 1], s=4, color=_FAKE, label="generated")
        axes.set(xlabel="feature 1", ylabel="feature 2")
        axes.set(title=f"D's 2-unit feature layer, iteration {iteration}")
        axes.legend(loc="best", fontsize="small", markerscale=3)
        return figure

    def losses_figure(self, model: GenerativeModule) -> Figure:
        """One panel per loss (their scales differ), each with the value at equilibrium when it is defined."""
        figure = self._figure(2 * self.plot_size, self.plot_size)
        panels = figure.subplots(2, 1, sharex=True)
        reference = equilibrium_losses(model.loss if isinstance(model, ShowsCriticFeatures) else None) or (None, None)
        for axes, key, color, value in zip(panels, LOSS_KEYS, (_REAL, _FAKE), reference):
            axes.plot(self.records["iteration"], self.records[key], color=color,
                      label=f"{LOSS_KEYS[key]}, mean of each {self.record_every_n_iterations} iterations")
            if value is not None:
                axes.axhline(value, color="0.4", linestyle="--", linewidth=1,
                             label=f"when D cannot tell real from generated ({value:.4f})")
            axes.set(ylabel=LOSS_KEYS[key])
            axes.legend(loc="best", fontsize="small")
        panels[0].set(title="losses")
        panels[1].set(xlabel="iteration")
        return figure

    # --- writing ---------------------------------------------------------------------------------------
    def _save(self, trainer: L.Trainer, figure: Figure, name: str, tag: str, step: int) -> Path | None:
        return save_artifact(trainer, f"toy/{name}", figure_to_image(figure), tag, step)

    @keeps_training_rng
    def plot(self, trainer: L.Trainer, model: GenerativeModule) -> None:
        iteration = iterations_done(trainer)
        if iteration == self._last_plotted:
            return
        self._last_plotted = iteration
        for kind, figure in (("points", self.points_figure(model, iteration)),
                             ("features", self.features_figure(model, iteration))):
            self._save(trainer, figure, f"{kind}_iteration_{iteration:07d}.png", f"toy/{kind}", iteration)

    @keeps_training_rng
    def record(self, trainer: L.Trainer, model: GenerativeModule) -> dict[str, float] | None:
        iteration = iterations_done(trainer)
        if iteration == self._last_recorded:
            return None
        self._last_recorded = iteration
        row = {"iteration": float(iteration)}
        for key, (total, count) in self._window.items():
            row[key] = total / count if count else math.nan
        self._window = {key: [0.0, 0] for key in LOSS_KEYS}
        row |= self.measure(model)
        for key, value in row.items():
            self.records[key].append(value)
        measures = ("curve_distance", "sliced_wasserstein")
        metrics = {f"toy/{key}": row[key] for key in measures if math.isfinite(row[key])}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=iteration)
        if not trainer.fast_dev_run:
            path = run_dir(trainer) / run_layout.TOY_RECORDS
            line: dict[str, Any] = {"iteration": iteration}
            line |= {key: value if math.isfinite(value) else None for key, value in row.items() if key != "iteration"}
            line |= {"sliced_wasserstein_real_vs_real": self.floor, "num_points": self.num_points,
                     "num_directions": self.num_directions}
            append_jsonl(path, line)
        return row

    # --- hooks -------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The starting state (iteration 0, or where a resumed run continues) as a first frame."""
        if trainer.is_global_zero:
            self.record(trainer, pl_module)  # type: ignore[arg-type]
            self.plot(trainer, pl_module)  # type: ignore[arg-type]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any) -> None:
        if not trainer.is_global_zero:
            return
        # the GAN returns every step's losses; Lightning's logged values exist only every log_every_n_steps
        metrics = outputs if isinstance(outputs, Mapping) and outputs else trainer.callback_metrics
        for key, name in LOSS_KEYS.items():
            if name in metrics:  # floats only: the window never holds a tensor (or its graph)
                self._window[key][0] += float(metrics[name])
                self._window[key][1] += 1
        iteration = iterations_done(trainer)
        if iteration % self.record_every_n_iterations == 0:
            self.record(trainer, pl_module)  # type: ignore[arg-type]
        if iteration % self.every_n_iterations == 0:
            self.plot(trainer, pl_module)  # type: ignore[arg-type]

    @keeps_training_rng
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        model: GenerativeModule = pl_module  # type: ignore[assignment]
        self.record(trainer, model)
        self.plot(trainer, model)
        self._save(trainer, self.losses_figure(model), "losses.png", "toy/losses", iterations_done(trainer))
        last = {key: values[-1] for key, values in self.records.items() if values}
        if last:
            rank_zero_info(
                f"ToyGANPlots at iteration {int(last['iteration'])}: mean distance of {self.num_points} generated"
                f" points to the curve {last['curve_distance']:.4f}; sliced Wasserstein-2 to {self.num_points}"
                f" held-out real points {last['sliced_wasserstein']:.4f} (real vs real: {self.floor:.4f})"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"noise": self.noise, "records": self.records, "last_plotted": self._last_plotted}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.noise, self.records = state_dict["noise"], state_dict["records"]
        self._last_plotted = state_dict["last_plotted"]
        self._last_recorded = int(self.records["iteration"][-1]) if self.records["iteration"] else -1
