"""The hand-written training iteration genlab replaces, on any device: what a user writes without a framework.

Each builder copies the model's networks to `device` (in `memory_format`; by default as they are), builds their
optimizers from the model's own settings and returns a closure running one fp32 iteration: the next batch moved
to the device, then the updates. The copies start from the model's weights, so both sides of a comparison train
identical networks. No logging, no checks, no host reads of tensor values. benchmarks/throughput.py (on the CPU)
and benchmarks/gpu_check.py (on the GPU, or the CPU) time the same code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from genlab.likelihoods import Bernoulli
from genlab.models import GAN, VAE


def on_device(batches: Iterator[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
    """The batches copied to `device` as a plain loop does (`.to(device)` per batch, asynchronous where pinned)."""
    for batch in batches:
        yield batch.to(device, non_blocking=True)


def copy_to(network: nn.Module, device: torch.device, memory_format: torch.memory_format) -> nn.Module:
    """A copy on `device`; genlab's model may be in channels-last layout, which a plain loop would not choose."""
    return copy.deepcopy(network).to(device, memory_format=memory_format)


CPU = torch.device("cpu")


def gan_plain_step(model: GAN, batches: Iterator[torch.Tensor], device: torch.device = CPU,
                   memory_format: torch.memory_format = torch.preserve_format) -> Callable[[], None]:
    """One plain GAN iteration (CS231n style): D on a real batch and detached fakes (+ the WGAN-GP penalty, weight
    clipping where set), and every `n_critic`-th iteration G on fresh noise."""
    if model.num_classes:
        raise SystemExit("plain loop: conditional GANs are not covered")
    generator = copy_to(model.generator, device, memory_format)
    discriminator = copy_to(model.discriminator, device, memory_format)
    g_opt = model.generator_optimizer(generator.parameters())
    d_opt = model.discriminator_optimizer(discriminator.parameters())
    loss, uniform, latent = model.loss, model.noise == "uniform", model.latent_dim
    n_critic, gp_weight, clip = model.n_critic, model.gp_weight, model.clip_weights
    batches = on_device(batches, device)
    done = 0

    def noise(n: int) -> torch.Tensor:
        return torch.rand(n, latent, device=device) * 2 - 1 if uniform else torch.randn(n, latent, device=device)

    def penalty(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        epsilon = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=device)
        mixed = (epsilon * real + (1 - epsilon) * fake).requires_grad_(True)
        (gradients,) = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
        return (gradients.flatten(1).norm(2, dim=1) - 1).pow(2).mean()

    def step() -> None:
        nonlocal done
        done += 1
        real = next(batches)
        fake = generator(noise(real.shape[0])).detach()
        d_loss = loss.discriminator(discriminator(real), discriminator(fake))
        if gp_weight:
            d_loss = d_loss + gp_weight * penalty(real, fake)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        if clip is not None:
            with torch.no_grad():
                for parameter in discriminator.parameters():
                    parameter.clamp_(-clip, clip)
        if done % n_critic:
            return
        g_loss = loss.generator(discriminator(generator(noise(real.shape[0]))))
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()

    return step


def vae_plain_step(model: VAE, batches: Iterator[torch.Tensor], device: torch.device = CPU,
                   memory_format: torch.memory_format = torch.preserve_format) -> Callable[[], None]:
    """One plain VAE iteration: encoder on intensities in [0, 1] (`batches`), reparameterised z, Bernoulli
    reconstruction (BCE on logits summed per image) + closed-form KL, both averaged over the batch; the cost of
    genlab's VAE iteration (its `encoder_input: symmetric` adds one elementwise op)."""
    if not isinstance(model.likelihood, Bernoulli):
        raise SystemExit("plain loop: the VAE loop implements the Bernoulli likelihood only")
    encoder, decoder = copy_to(model.encoder, device, memory_format), copy_to(model.decoder, device, memory_format)
    optimizer = model.optimizer(list(encoder.parameters()) + list(decoder.parameters()))
    batches = on_device(batches, device)

    def step() -> None:
        images = next(batches)
        mean, logvar = encoder(images)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        logits = decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / len(images)
        kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum() / len(images)
        optimizer.zero_grad()
        (recon + kl).backward()
        optimizer.step()

    return step
