"""The variational autoencoder (Kingma & Welling) as a `GenerativeModule`: samples, grids and metrics work
unchanged, and `encode`/`reconstruct` add what latent interpolation needs."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from genlab.data.base import data_split
from genlab.errors import GenlabError
from genlab.likelihoods import PixelLikelihood, kl_to_standard_normal, resolve_likelihood
from genlab.metrics.vae import active_units, iwae_nll, kl_per_dimension
from genlab.models.base import GenerativeModule, evaluation_mode
from genlab.nets.vae import MLPDecoder, MLPEncoder, VAEDecoder, VAEEncoder
from genlab.priors import GaussianMixture
from genlab.runtime import attached_trainer
from genlab.training import DivergenceGuard

#: state_dict keys of the sampling mixture (absent when sampling_prior is "standard")
MIXTURE_KEYS = ("mixture.", "mixture_iteration")


def to_intensities(images: Tensor) -> Tensor:
    """Data in [-1, 1] → pixel intensities in [0, 1], the space of the encoder input and the likelihood."""
    return (images + 1) / 2


def check_vae_settings(encoder: VAEEncoder, decoder: VAEDecoder, sampling_prior: str, encoder_input: str,
                       likelihood_samples: int) -> None:
    """One line for networks that do not fit together or a setting out of range."""
    if encoder.latent_dim != decoder.latent_dim:
        raise GenlabError(f"model.encoder has latent_dim {encoder.latent_dim} but model.decoder has"
                          f" {decoder.latent_dim}: give both the same latent_dim")
    if tuple(encoder.in_shape) != tuple(decoder.out_shape):
        raise GenlabError(f"model.encoder reads images of shape {tuple(encoder.in_shape)} but model.decoder makes"
                          f" {tuple(decoder.out_shape)}: make their shape settings agree")
    if sampling_prior not in ("standard", "mixture"):
        raise GenlabError(f"model.sampling_prior must be 'standard' or 'mixture', got {sampling_prior!r}")
    if encoder_input not in ("unit", "symmetric"):
        raise GenlabError(f"model.encoder_input must be 'unit' or 'symmetric', got {encoder_input!r}")
    if likelihood_samples < 0:
        raise GenlabError(f"model.likelihood_samples must be 0 (off) or more, got {likelihood_samples}")


class VAE(GenerativeModule):
    """Encoder q(z|x) = N(mean, diag exp(logvar)), prior N(0, I), decoder logits scored by a pixel likelihood.

    The loss per image is reconstruction (the likelihood's negative log, summed over pixels) + closed-form
    KL(q(z|x) || N(0, I)); both are averaged over the batch, so `loss/recon` is the per-image figure the references
    report. Logged as loss/recon, loss/kl, loss/total (training steps) and val/… , test/… (epoch means).

    Args:
        encoder, decoder: the networks (see `genlab.nets.vae`); same latent_dim, matching image shapes.
        likelihood: "bernoulli" (BCE on logits), "continuous_bernoulli", or a `genlab.likelihoods` object
            such as `ContinuousBernoulli` with its own `log_normalizer_weight`.
        optimizer: optimizer class and settings (the reference: Adam, lr 1e-3).
        on_divergence: when the loss, gradients or weights turn NaN or infinite, "stop" saves the last good
            state as checkpoints/diverged-iteration_N.ckpt and ends the run with one line naming the iteration;
            "skip" leaves that update out (logged as `divergence/skipped_updates`).
        sampling_prior: where samples (grids, metrics, `genlab predict`) draw their latent codes from.
            "standard" is the training prior N(0, I). "mixture" is a Gaussian mixture fitted to the training
            images' posterior means ("ex-post density estimation", see `genlab.priors`), refitted whenever
            samples are drawn from weights newer than the mixture (about 5 s for 50 components on a 2-core
            CPU; the fit is deterministic, so when it happens never changes a sample). Training and the ELBO are
            the same for both.
        mixture_components: the mixture's number of Gaussians. The mixture is part of every VAE (it costs
            nothing until sampled), so `GenerativeMetrics(samplers: [mixture])` can score it beside N(0, I).
        encoder_input: what the encoder reads: "unit" pixel intensities in [0, 1], or "symmetric" the same
            images in [-1, 1] (the reference notebook's `Q(preprocess_img(x))`, i.e. 2x - 1). The likelihood
            always scores intensities in [0, 1].
        likelihood_samples: k of the importance-weighted -log p(x) that `genlab test` reports as
            `test/nll_iwae<k>` (0: not computed), beside `test/active_units` and `test/kl_dim_<d>`
            (`genlab.metrics.vae` says what they mean and which MNIST variant the number is on).
    """

    def __init__(
        self,
        encoder: VAEEncoder,
        decoder: VAEDecoder,
        likelihood: str | PixelLikelihood = "bernoulli",
        optimizer: OptimizerCallable = torch.optim.Adam,
        on_divergence: Literal["stop", "skip"] = "stop",
        sampling_prior: Literal["standard", "mixture"] = "standard",
        mixture_components: int = 50,
        encoder_input: Literal["unit", "symmetric"] = "unit",
        likelihood_samples: int = 100,
    ) -> None:
        super().__init__()
        check_vae_settings(encoder, decoder, sampling_prior, encoder_input, likelihood_samples)
        # sampling settings stay out of the hyperparameters: LightningCLI lets a checkpoint's hyperparameters
        # override the command line, and `genlab test --model.init_args.sampling_prior=standard` must work
        self.save_hyperparameters(ignore=["encoder", "decoder", "optimizer", "likelihood", "sampling_prior",
                                          "mixture_components"])
        self.encoder, self.decoder = encoder, decoder
        self.likelihood = resolve_likelihood(likelihood)
        self.optimizer = optimizer
        self.divergence = DivergenceGuard(on_divergence)
        self.sampling_prior, self.encoder_input = sampling_prior, encoder_input
        self.likelihood_samples = likelihood_samples
        self._test_sums: Tensor | None = None  # per latent dimension: Σ mean, Σ mean², Σ KL; and the count
        self._test_count = 0
        self.mixture = GaussianMixture(mixture_components, encoder.latent_dim)
        # the iteration whose weights the mixture was fitted to (-1: never), saved with the checkpoint
        self.register_buffer("mixture_iteration", torch.tensor(-1))

    @property
    def latent_dim(self) -> int:  # type: ignore[override]
        return self.encoder.latent_dim

    def sampler_options(self) -> dict[str, tuple[str, str]]:
        return {prior: ("sampling_prior", prior) for prior in ("standard", "mixture")}

    @property
    def automatic_bf16(self) -> bool:  # type: ignore[override]
        """bf16 may be chosen automatically for the MLP VAE only: its bf16 runs are on record as scoring like its fp32
        runs (RESULTS.md, "vae_mnist_bf16 against vae_mnist": 3 seeds a side scored by one classifier pair, no score
        lower in bf16). A convolutional VAE, or a subclass with another objective (the β-VAE), has no bf16 runs on
        record, so it stays fp32 unless asked."""
        return type(self) is VAE and isinstance(self.encoder, MLPEncoder) and isinstance(self.decoder, MLPDecoder)

    def sampler_settings(self) -> dict[str, Any]:
        if self.sampling_prior == "standard":
            return {"latent_dim": self.latent_dim, "prior": "N(0, I)"}
        return {"latent_dim": self.latent_dim,
                "prior": f"{self.mixture.components}-component Gaussian mixture (EM, seed {self.mixture.seed})"
                         f" fitted to the posterior means of at most {self.mixture.max_points} training images"
                         " (genlab.priors)",
                "mixture_fitted_to_iteration": int(self.mixture_iteration)}

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if self.sampling_prior == "mixture":
            self.refresh_mixture()
            if self.mixture.fitted:
                return self.mixture.sample(n, generator).to(self.device)
        device = generator.device if generator is not None else self.device
        return torch.randn(n, self.latent_dim, generator=generator, device=device).to(self.device)

    def refresh_mixture(self) -> None:
        """Fits the sampling mixture to the training images' posterior means unless it already fits these weights.

        Needs the trainer's data module (outside a trainer, the last fit is used as it is). Each process fits
        its own copy with no communication, so callbacks may sample on rank 0 alone; the fit is deterministic
        and runs on the CPU, so every rank holds the same mixture.
        """
        trainer = attached_trainer(self)
        if trainer is None:
            return
        iteration = self.iteration if trainer.state.fn == TrainerFn.FITTING else self.trained_iterations
        if int(self.mixture_iteration) == iteration and self.mixture.fitted:
            return
        train = data_split(trainer.datamodule, "train", "model.sampling_prior 'mixture' (fitted to the training codes)")
        with evaluation_mode(self):
            means = torch.cat([self.encode(x.to(self.device))[0] for x in train.samples.split(1000)])
        self.mixture.fit(means.cpu())  # on the CPU: float64 everywhere (MPS has none), same bits on every rank
        self.mixture_iteration.fill_(iteration)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lets one checkpoint be sampled either way: a mixture it lacks (or of another size) is fitted before
        sampling, one it has but this model does not use is dropped."""
        weights = checkpoint.get("state_dict", {})
        saved = {key: weights.pop(key) for key in list(weights) if key.startswith(MIXTURE_KEYS)}
        own = {key: value for key, value in self.state_dict().items() if key.startswith(MIXTURE_KEYS)}
        usable = saved.keys() == own.keys() and all(saved[key].shape == own[key].shape for key in own)
        weights.update(saved if usable else {**own, "mixture_iteration": torch.tensor(-1)})
        super().on_load_checkpoint(checkpoint)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images in [-1, 1]: the likelihood's image (e.g. its mean) for the decoder's logits."""
        return self.likelihood.image(self.decoder(z)) * 2 - 1

    def timing_pass(self, n: int) -> Tensor:
        """The encoder's means of decoded random codes: both networks."""
        return self.encode(super().timing_pass(n))[0]

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-variance) of q(z|x) for images x in [-1, 1]."""
        return self.encoder(x if self.encoder_input == "symmetric" else to_intensities(x))

    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoded posterior mean: a deterministic reconstruction in [-1, 1]."""
        mean, _ = self.encode(x)
        return self.decode(mean)

    def losses(self, x: Tensor) -> dict[str, Tensor]:
        """Batch means of the per-image reconstruction term, KL term and their sum (the negative ELBO)."""
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()  # reparameterisation: gradients reach the encoder
        recon = self.likelihood.nll(self.decoder(z), to_intensities(x)).mean()
        kl = kl_to_standard_normal(mean, logvar).mean()
        return {"loss/recon": recon, "loss/kl": kl, "loss/total": recon + kl}

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.check_data_shape(tuple(self.decoder.out_shape), "model.decoder's out_shape")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.build_optimizer(self.optimizer, self.parameters(), "model.optimizer")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        losses = self.losses(batch[0])
        if self.logging_this_step():  # values logged on other steps are dropped, after costing ~0.1 ms each
            self.log_dict({key: value.detach() for key, value in losses.items()}, on_step=True, on_epoch=False)
        return losses["loss/total"]

    def _evaluate(self, batch: tuple[Tensor, Tensor], prefix: str) -> None:
        losses = self.losses(batch[0])
        self.log_dict({f"{prefix}/{key}": value for key, value in losses.items()}, on_step=False, on_epoch=True,
                      batch_size=batch[0].shape[0])

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")
        images = batch[0]
        mean, logvar = self.encode(images)
        sums = torch.stack([mean.sum(0), mean.pow(2).sum(0), kl_per_dimension(mean, logvar).sum(0)]).double()
        self._test_sums = sums if self._test_sums is None else self._test_sums + sums
        self._test_count += len(images)
        if self.likelihood_samples:
            targets = to_intensities(images)
            nll = iwae_nll(mean, logvar, lambda z: -self.likelihood.nll(
                self.decoder(z.flatten(0, 1)), targets.repeat(len(z), *[1] * (targets.dim() - 1))).view(len(z), -1),
                self.likelihood_samples, torch.Generator(device=self.device).manual_seed(batch_idx))
            self.log(f"test/nll_iwae{self.likelihood_samples}", nll.mean(), on_epoch=True, batch_size=len(images),
                     sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self._test_sums, self._test_count = None, 0

    def on_test_epoch_end(self) -> None:
        """Active units and the KL of each latent dimension over the whole test split (summed over processes)."""
        if self._test_sums is None:
            return
        count = self.trainer.strategy.reduce(torch.tensor(float(self._test_count), device=self.device), reduce_op="sum")
        sums = self.trainer.strategy.reduce(self._test_sums, reduce_op="sum") / count.double()
        self.log("test/active_units", float(active_units(sums[0], sums[1])))
        for dim, kl in enumerate(sums[2].tolist()):
            self.log(f"test/kl_dim_{dim:02d}", kl)
