"""One GAN LightningModule for every adversarial setting the references use: unconditional or conditional,
minimax / least squares / Wasserstein (clipping or gradient penalty) / hinge, any n_critic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from genlab.augment import diff_augment, parse_policy
from genlab.errors import GenlabError
from genlab.losses import AdversarialLoss, LossName, gradient_penalty, resolve_loss
from genlab.models.base import GenerativeModule
from genlab.nets.base import Discriminator, Generator
from genlab.nets.toy import feature_layer_error
from genlab.runtime import clamp_all
from genlab.training import DivergenceGuard, optimized_parameters, update_norms
from genlab.training.ddp import AlternatingUpdatesDDP
from genlab.training.ema import WeightAverage

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def check_settings(n_critic: int, gradient_penalty: float, clip_weights: float | None, sampling_batchnorm: str) -> None:
    """One line for a GAN setting out of range."""
    if n_critic < 1:
        raise GenlabError(f"model.n_critic must be at least 1, got {n_critic}")
    if gradient_penalty < 0:
        raise GenlabError(f"model.gradient_penalty must be 0 or more, got {gradient_penalty}")
    if clip_weights is not None and clip_weights <= 0:
        raise GenlabError(f"model.clip_weights must be positive (or null), got {clip_weights}")
    if sampling_batchnorm not in ("running", "batch"):
        raise GenlabError(f"model.sampling_batchnorm must be 'running' or 'batch', got {sampling_batchnorm!r}")


def check_average(decay: float | None, warmup_iterations: int, sampling_weights: str) -> None:
    """One line for moving-average settings out of range."""
    if decay is not None and not 0.0 < decay < 1.0:
        raise GenlabError(f"model.ema_decay must be between 0 and 1 (e.g. 0.999), or null for none; got {decay}")
    if warmup_iterations < 0:
        raise GenlabError(f"model.ema_warmup_iterations must be 0 or more, got {warmup_iterations}")
    if sampling_weights not in ("raw", "ema"):
        raise GenlabError(f"model.sampling_weights must be 'raw' or 'ema', got {sampling_weights!r}")
    if sampling_weights == "ema" and decay is None:
        raise GenlabError("model.sampling_weights 'ema' needs a moving average: set model.ema_decay (e.g. 0.999)")


def check_networks(generator: Generator, discriminator: Discriminator, gradient_penalty: float) -> None:
    """One line when the two networks cannot train together."""
    if gradient_penalty and any(isinstance(m, BATCH_NORMS) for m in discriminator.modules()):
        raise GenlabError(  # BatchNorm mixes the batch, so ∇D(x̂) is no longer a per-sample gradient
            f"model.gradient_penalty needs a critic without BatchNorm, but {type(discriminator).__name__} has"
            " BatchNorm layers: choose another discriminator or set gradient_penalty: 0"
        )
    if generator.num_classes != discriminator.num_classes:
        raise GenlabError(
            f"model.generator has num_classes {generator.num_classes} but model.discriminator has"
            f" {discriminator.num_classes}: give both the same num_classes"
        )
    if tuple(generator.out_shape) != tuple(discriminator.in_shape):
        raise GenlabError(
            f"model.generator makes samples of shape {tuple(generator.out_shape)} but model.discriminator"
            f" expects {tuple(discriminator.in_shape)}: make their shape settings agree"
        )


def check_augment(augment: str, discriminator: Discriminator) -> tuple[str, ...]:
    """The DiffAugment families asked for; one line when the discriminator does not take images."""
    policy = parse_policy(augment)
    if policy and len(discriminator.in_shape) != 3:
        raise GenlabError(
            f"model.augment transforms images (channels x height x width), but {type(discriminator).__name__} takes"
            f" samples of shape {tuple(discriminator.in_shape)}: leave model.augment empty for this data"
        )
    return policy


@contextmanager
def frozen(parameters: list[Tensor], keep: list[Tensor]) -> Iterator[None]:
    """`parameters` get no gradients inside, except those also in `keep`: the generator's update needs gradients
    through the critic, not of the critic's weights, so backward skips their kernels (and, under DDP, their
    all-reduce). Parameters a user froze stay frozen."""
    kept = {id(parameter) for parameter in keep}
    trainable = [parameter for parameter in parameters if parameter.requires_grad and id(parameter) not in kept]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


class GAN(GenerativeModule):
    """Alternating discriminator (critic) and generator updates under manual optimization.

    Every training batch makes one discriminator step; every `n_critic`-th batch is followed by one
    generator step on fresh noise. In a conditional model the discriminator step's fakes take the real
    batch's labels and the generator step draws labels uniformly.

    Mode-collapse signals logged every step: `d/real`, `d/fake` (mean D(x), D(G(z))), the gradient norms
    `grad_norm/d`, `grad_norm/g` (after backward, before the step) and, for Wasserstein losses,
    `wasserstein_estimate`.

    Args:
        generator, discriminator: the networks (see `genlab.nets`).
        loss: a name (minimax, non_saturating, least_squares, wasserstein, hinge) or an `AdversarialLoss`
            object such as `genlab.losses.LeastSquares` with its own settings.
        n_critic: discriminator steps per generator step.
        gradient_penalty: weight λ of the WGAN-GP penalty (0 turns it off).
        clip_weights: clip every critic weight to [-c, c] after each critic step (the original WGAN).
        noise: prior of the latent vectors: "normal" N(0, I) or "uniform" U(-1, 1).
        generator_optimizer, discriminator_optimizer: optimizer classes and settings, e.g. Adam with betas.
        on_divergence: when a side's loss, gradients or weights turn NaN or infinite, "stop" saves the last
            good state as checkpoints/diverged-iteration_N.ckpt and ends the run with one line naming the
            iteration and the side; "skip" leaves that update out (logged as `divergence/skipped_updates`).
        sampling_batchnorm: how the generator's BatchNorm layers normalise when samples are drawn (grids,
            metrics, `genlab predict`): "running" uses the running statistics (eval mode, the usual choice);
            "batch" uses the statistics of each batch being drawn, as the reference notebooks do (their
            generators stay in training mode), so a sample then depends on the batch it is drawn in and the
            records note the batch size. Running statistics are never changed by sampling.
        ema_decay: keep an exponential moving average of the generator's weights with this decay (e.g. 0.999;
            None: none). It does not change training; samples can be drawn from it (`sampling_weights`), and
            `GenerativeMetrics` scores it beside the raw generator (`…@ema`). See `genlab.training.ema`.
        ema_warmup_iterations: iterations during which the average copies the generator before averaging.
        sampling_weights: "raw" samples from the trained generator, "ema" from its moving average.
        augment: DiffAugment families applied to every image the discriminator sees, real and generated, in
            both updates: a comma-separated subset of "color,translation,cutout" ("" for none). For small data
            sets, where the discriminator otherwise memorises the training images (`genlab.augment`).
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        loss: LossName | AdversarialLoss = "non_saturating",
        n_critic: int = 1,
        gradient_penalty: float = 0.0,
        clip_weights: float | None = None,
        noise: Literal["normal", "uniform"] = "normal",
        generator_optimizer: OptimizerCallable = torch.optim.Adam,
        discriminator_optimizer: OptimizerCallable = torch.optim.Adam,
        on_divergence: Literal["stop", "skip"] = "stop",
        sampling_batchnorm: Literal["running", "batch"] = "running",
        ema_decay: float | None = None,
        ema_warmup_iterations: int = 1000,
        sampling_weights: Literal["raw", "ema"] = "raw",
        augment: str = "",
    ) -> None:
        super().__init__()
        check_settings(n_critic, gradient_penalty, clip_weights, sampling_batchnorm)
        check_average(ema_decay, ema_warmup_iterations, sampling_weights)
        check_networks(generator, discriminator, gradient_penalty)
        self.augment = check_augment(augment, discriminator)
        self.automatic_optimization = False
        # sampling settings, not training ones: kept out of the hyperparameters so that `genlab test` can
        # score a checkpoint either way from the command line
        self.save_hyperparameters(ignore=["generator", "discriminator", "generator_optimizer",
                                          "discriminator_optimizer", "loss", "sampling_batchnorm", "sampling_weights"])
        self.sampling_batchnorm, self.sampling_weights = sampling_batchnorm, sampling_weights
        self.generator_average = WeightAverage(generator, ema_decay, ema_warmup_iterations) if ema_decay else None
        self.generator, self.discriminator = generator, discriminator
        self.loss = resolve_loss(loss)
        self.n_critic, self.gp_weight, self.clip_weights, self.noise = n_critic, gradient_penalty, clip_weights, noise
        self.generator_optimizer, self.discriminator_optimizer = generator_optimizer, discriminator_optimizer
        self.divergence = DivergenceGuard(on_divergence)

    @property
    def latent_dim(self) -> int:  # type: ignore[override]
        return self.generator.latent_dim

    @property
    def automatic_bf16(self) -> bool:  # type: ignore[override]
        """bf16 may be chosen for the losses whose bf16 runs were measured against fp32 seeds (non-saturating
        minimax with MLP networks, least squares with the DCGAN: RESULTS.md; `AdversarialLoss.bf16_on_record`),
        not for WGANs: the critic's Lipschitz constraint (gradient penalty through a second backward, or weight
        clipping) has no such measurement."""
        return self.loss.bf16_on_record and not self.gp_weight and self.clip_weights is None

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return self.generator.num_classes

    def sampling_generator(self) -> nn.Module:
        """The generator samples come from: the trained one, or its moving average (`sampling_weights`)."""
        if self.sampling_weights == "ema" and self.generator_average is not None:
            return self.generator_average.average
        return self.generator

    def _generator_norms(self) -> list[nn.Module]:
        return [m for m in self.sampling_generator().modules() if isinstance(m, BATCH_NORMS)]

    def sampler_options(self) -> dict[str, tuple[str, str]]:
        options = {mode: ("sampling_batchnorm", mode) for mode in ("running", "batch") if self._generator_norms()}
        if self.generator_average is not None:
            options |= {weights: ("sampling_weights", weights) for weights in ("raw", "ema")}
        return options

    def scored_alongside(self) -> tuple[str, ...]:
        """Samplers `GenerativeMetrics` scores in every evaluation besides the configured one: the other weights."""
        if self.generator_average is None:
            return ()
        return ("raw",) if self.sampling_weights == "ema" else ("ema",)

    def batch_statistics_layers(self) -> list[nn.Module]:
        """The generator's BatchNorm layers when samples use batch statistics (see
        `genlab.models.base.evaluation_mode`)."""
        return self._generator_norms() if self.sampling_batchnorm == "batch" else []

    def sampler_settings(self) -> dict[str, Any]:
        norms = self._generator_norms()
        if not norms:
            batchnorm = "none (the generator has no BatchNorm)"
        elif self.sampling_batchnorm == "batch":
            batchnorm = ("batch statistics of each sampling batch (training-mode BatchNorm,"
                         " running statistics untouched)")
        else:
            batchnorm = "running statistics (eval mode)"
        weights = "the trained generator"
        if self.sampling_weights == "ema" and self.generator_average is not None:
            weights = f"moving average of the generator's weights {self.generator_average.settings()}"
        return {"latent_dim": self.latent_dim, "noise": "U(-1, 1)" if self.noise == "uniform" else "N(0, I)",
                "batchnorm": batchnorm, "weights": weights}

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if generator is not None and generator.device != self.device:
            z = self._draw_noise(n, generator, torch.device("cpu"))
            return z.to(self.device)
        return self._draw_noise(n, generator, self.device)

    def _draw_noise(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        if self.noise == "uniform":
            return torch.rand(n, self.latent_dim, generator=generator, device=device) * 2 - 1
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def timing_pass(self, n: int) -> Tensor:
        """The critic's scores of generated images: both networks, as in the generator's step."""
        labels = self.default_labels(n)
        return self.discriminator(self.generator(torch.randn(n, self.latent_dim, device=self.device), labels), labels)

    def critic_features(self, points: Tensor) -> Tensor:
        """The critic's last hidden features of `points` (2 units in `ToyDiscriminator`): what the toy plots draw."""
        return self.discriminator.features(points)  # type: ignore[operator]

    def critic_feature_problem(self) -> str | None:
        """Why the critic's features cannot be drawn in 2-D, or None."""
        return feature_layer_error(self.discriminator)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.sampling_generator()(z, labels if self.num_classes else None)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.check_data_shape(tuple(self.generator.out_shape), "model.generator's out_shape")
        datamodule = getattr(self.trainer, "datamodule", None)
        data_classes = getattr(datamodule, "num_classes", None)
        if self.num_classes and data_classes is not None and data_classes != self.num_classes:
            raise GenlabError(
                f"the conditional model has num_classes {self.num_classes} but the data"
                f" ({type(datamodule).__name__}) has {data_classes}: set the networks' num_classes to"
                f" {data_classes}"
            )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            self.build_optimizer(self.discriminator_optimizer, self.discriminator.parameters(),
                                 "model.discriminator_optimizer"),
            self.build_optimizer(self.generator_optimizer, self.generator.parameters(), "model.generator_optimizer"),
        ]

    def _fake_labels(self, n: int) -> Tensor | None:
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), device=self.device)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """One critic update on the batch, a generator update every `n_critic` iterations. Returns this
        iteration's losses (detached), which Lightning hands to callbacks' `on_train_batch_end` as `outputs`."""
        real, labels = batch
        d_optimizer, g_optimizer = self.optimizers()  # type: ignore[misc]
        logs, real_scores, fake_scores = self._critic_step(d_optimizer, real, labels if self.num_classes else None)
        logging = self.logging_this_step()
        if logging:
            logs |= {key: value.detach() for key, value in self.loss.summaries(real_scores, fake_scores).items()}
        if self.iteration % self.n_critic == 0:
            with frozen(optimized_parameters(d_optimizer), keep=optimized_parameters(g_optimizer)):
                logs |= self._generator_step(g_optimizer, real.shape[0])
        if logging:  # self.log costs ~0.1 ms per value: with tiny networks that is most of a step
            self.divergence.settle(self)  # a boundary: the guard reads its checks (and may stop the run)
            if self.divergence.policy == "skip":
                logs["divergence/skipped_updates"] = float(self.divergence.skipped_updates)
            self.log_dict(logs, prog_bar=False, on_step=True, on_epoch=False)
        return {key: logs[key] for key in ("loss/d", "loss/g") if key in logs}

    def _critic_step(self, optimizer: torch.optim.Optimizer, real: Tensor,
                     labels: Tensor | None) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The discriminator's update on a real batch and as many fakes (sharing its labels, so the penalty's
        mixes are consistent); returns its logs and the scores of both sides. The generator runs without
        gradients, so no toggling of `requires_grad` is needed (Lightning's `toggled_optimizer` costs ~40 µs)."""
        self.divergence.remember_buffers(self)  # BatchNorm statistics, put back if this update is non-finite
        with torch.no_grad():
            fake = self.generator(self.sample_latent(real.shape[0]), labels)
        real, fake = self.seen_by_critic(real), self.seen_by_critic(fake)
        real_scores = self.discriminator(real, labels)
        fake_scores = self.discriminator(fake, labels)
        loss = self.loss.discriminator(real_scores, fake_scores)
        logs = {"loss/d": loss.detach()}
        if self.gp_weight:
            penalty = gradient_penalty(self.discriminator, real, fake, labels)
            loss = loss + self.gp_weight * penalty
            logs["loss/gradient_penalty"] = penalty.detach()
        clip = self._clip(optimizer) if self.clip_weights is not None else None
        logs["grad_norm/d"], _ = self._update("discriminator", optimizer, loss, also=clip)
        return logs, real_scores, fake_scores

    def seen_by_critic(self, images: Tensor) -> Tensor:
        """What the discriminator is shown of `images`: their DiffAugment (`augment`), or the images themselves.
        The gradient penalty's mixes are drawn between augmented images, the inputs the critic actually sees."""
        return diff_augment(images, self.augment) if self.augment else images

    def _clip(self, optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        """Clipping every critic weight to [-c, c]: part of the critic's update (left out with it when skipped)."""
        parameters, bound = optimized_parameters(optimizer), self.clip_weights

        @torch.no_grad()
        def clip() -> None:
            clamp_all(parameters, bound)

        return clip

    def _generator_step(self, optimizer: torch.optim.Optimizer, n: int) -> dict[str, Tensor]:
        """The generator's update on fresh noise (and uniformly drawn labels when conditional)."""
        self.divergence.remember_buffers(self)
        labels = self._fake_labels(n)
        fake = self.seen_by_critic(self.generator(self.sample_latent(n), labels))
        loss = self.loss.generator(self.discriminator(fake, labels))
        grad_norm, stepped = self._update("generator", optimizer, loss)
        if self.generator_average is not None:
            self.generator_average.update(self.generator, self.iteration, stepped)
        return {"grad_norm/g": grad_norm, "loss/g": loss.detach()}

    def _update(self, side: str, optimizer: torch.optim.Optimizer, loss: Tensor,
                also: Callable[[], None] | None = None) -> tuple[Tensor, Tensor]:
        """zero_grad → backward → gradient and weight norms → the guarded step; returns the gradient norm and the
        device flag of whether the step was taken (never read here: that would make the host wait)."""
        optimizer.zero_grad(set_to_none=True)
        self.backward_of_update(loss)
        parameters = optimized_parameters(optimizer)
        if isinstance(self.trainer.strategy, AlternatingUpdatesDDP):  # DDP without a wrapper: average here
            self.trainer.strategy.average_gradients(parameters)
        norms = update_norms(parameters)
        return norms[0], self.divergence.step(self, side, optimizer, loss, norms, also)
