"""Throughput: genlab's `fit` against the hand-written notebook loop it replaces, side by side in one process.

For each model the reference is what users write today: a plain PyTorch loop over a torchvision-style
dataset (`transforms.ToTensor()` per sample, a `DataLoader` with batch 128, shuffle, no workers; PIL per PNG
for EmojiOne; NumPy-drawn points for the toy GAN), fp32, one discriminator and one generator step per
iteration. genlab runs the experiment's YAML through Lightning (TensorBoard logging on, checkpoints and sample
grids off). Both start from identical copies of the same freshly initialised networks, with the same batch
size, optimizer and loss; each is timed after a warm-up.

    python benchmarks/throughput.py --data-dir ../shared/datasets            # every model
    python benchmarks/throughput.py --only dcgan_mnist --iterations 60       # one model

It also prints this machine's measured fp32 (and bf16) matmul peak and the fraction of it the DCGAN achieves.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from genlab.cli import GenlabCLI
from genlab.data import EmojiDataModule, FashionMNISTDataModule, MNISTDataModule, QuadraticDataModule
from genlab.data.emoji import load_png
from genlab.models import GAN
from genlab.models.base import iterations_done

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


# --------------------------------------------------------------------------- reference data, as in the notebooks
class PNGFolder(torch.utils.data.Dataset):
    """The notebooks' image-folder dataset: one PIL decode and ToTensor per sample."""

    def __init__(self, folder: Path, background: tuple[int, int, int], image_size: int) -> None:
        self.files = sorted(folder.glob("*.png"))
        self.background, self.image_size = background, image_size
        self.to_tensor = T.ToTensor()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.to_tensor(load_png(self.files[index], self.background, self.image_size)), 0


def reference_batches(datamodule: L.LightningDataModule, batch_size: int) -> Iterator[torch.Tensor]:
    """Endless batches in [-1, 1] the way a notebook makes them."""
    if isinstance(datamodule, QuadraticDataModule):
        rng = np.random.default_rng(0)
        while True:
            x = rng.uniform(-datamodule.x_range, datamodule.x_range, batch_size)
            y = datamodule.a * x**2 + datamodule.b + datamodule.noise * rng.standard_normal(batch_size)
            yield torch.from_numpy(np.stack([x, y], axis=1)).float()
    if isinstance(datamodule, (MNISTDataModule, FashionMNISTDataModule)):
        dataset_class = torchvision.datasets.FashionMNIST if isinstance(datamodule, FashionMNISTDataModule) else torchvision.datasets.MNIST
        dataset = dataset_class(os.fspath(datamodule.data_dir), train=True, transform=T.ToTensor())
    elif isinstance(datamodule, EmojiDataModule):
        dataset = PNGFolder(datamodule.image_folder, datamodule.background, datamodule.image_size)
    else:
        raise ValueError(f"no reference loader for {type(datamodule).__name__}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)
    while True:
        for images, _ in loader:
            yield images * 2 - 1


# --------------------------------------------------------------------------- reference training steps
def gan_reference_step(model: GAN, batches: Iterator[torch.Tensor]) -> Callable[[], None]:
    """One notebook GAN iteration (CS231n style): D on real and detached fakes, then G on fresh noise."""
    generator, discriminator = copy.deepcopy(model.generator), copy.deepcopy(model.discriminator)
    g_opt = model.generator_optimizer(generator.parameters())
    d_opt = model.discriminator_optimizer(discriminator.parameters())
    loss, uniform, latent = model.loss, model.noise == "uniform", model.latent_dim

    def noise(n: int) -> torch.Tensor:
        return torch.rand(n, latent) * 2 - 1 if uniform else torch.randn(n, latent)

    def step() -> None:
        real = next(batches)
        fake = generator(noise(real.shape[0])).detach()
        d_loss = loss.discriminator(discriminator(real), discriminator(fake))
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        g_loss = loss.generator(discriminator(generator(noise(real.shape[0]))))
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()

    return step


def vae_reference_step(model: L.LightningModule, batches: Iterator[torch.Tensor]) -> Callable[[], None]:
    """One notebook VAE iteration: Bernoulli reconstruction (BCE on logits, summed per image) + closed-form KL."""
    encoder, decoder = copy.deepcopy(model.encoder), copy.deepcopy(model.decoder)
    optimizer = model.optimizer(list(encoder.parameters()) + list(decoder.parameters()))

    def step() -> None:
        images = (next(batches) + 1) / 2
        mean, logvar = encoder(images)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        logits = decoder(z).view_as(images)
        recon = F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / len(images)
        kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum() / len(images)
        optimizer.zero_grad()
        (recon + kl).backward()
        optimizer.step()

    return step


# --------------------------------------------------------------------------- timing
class StopAndTime(L.Callback):
    """Times iterations warmup+1 … warmup+n and stops the fit after them."""

    def __init__(self, warmup: int, iterations: int) -> None:
        self.warmup, self.iterations, self.rate = warmup, iterations, math.nan
        self._start = 0.0

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        done = iterations_done(trainer)
        if done == self.warmup:
            self._start = time.perf_counter()
        elif done == self.warmup + self.iterations:
            self.rate = self.iterations / (time.perf_counter() - self._start)
            trainer.should_stop = True


def time_reference(step: Callable[[], None], warmup: int, iterations: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return iterations / (time.perf_counter() - start)


def build(config: Path, data_dir: str, extra: list[str]) -> GenlabCLI:
    return GenlabCLI(args=["--config", os.fspath(config), f"--data.data_dir={data_dir}", *extra], run=False)


def time_genlab(cli: GenlabCLI, warmup: int, iterations: int, precision: str | None) -> float:
    timer = StopAndTime(warmup, iterations)
    with tempfile.TemporaryDirectory() as logs:
        trainer = L.Trainer(
            max_epochs=10_000,
            logger=TensorBoardLogger(logs, name="throughput"),
            log_every_n_steps=cli.trainer.log_every_n_steps,
            precision=precision or cli.trainer.precision,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        trainer.fit(cli.model, cli.datamodule)
    return timer.rate


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a square matmul: this machine's practical peak for dense linear algebra."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def flops_per_iteration(step: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


@dataclass
class Case:
    name: str
    iterations: int
    warmup: int


CASES = [
    Case("gan_mnist", 150, 20),
    Case("dcgan_mnist", 40, 5),
    Case("vae_mnist", 300, 30),
    Case("toy_quadratic", 1000, 100),
    Case("dcgan_emoji", 100, 10),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("GENLAB_DATA_DIR", "data"))
    parser.add_argument("--only", nargs="*", help="case names to run")
    parser.add_argument("--iterations", type=int, help="timed iterations per case (default: per case)")
    parser.add_argument("--precision", help="genlab's precision for every case (default: each YAML's)")
    args = parser.parse_args()
    torch.manual_seed(0)

    fp32_peak = matmul_peak(torch.float32)
    bf16_peak = matmul_peak(torch.bfloat16, size=512, repeats=2)
    print(f"machine: {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()},"
          f" matmul peak fp32 {fp32_peak:.1f} GFLOP/s, bf16 {bf16_peak:.1f} GFLOP/s"
          f" (oneDNN bf16 {'supported' if torch.ops.mkldnn._is_mkldnn_bf16_supported() else 'not supported'})")
    print(f"{'model':<15}{'reference it/s':>16}{'genlab it/s':>14}{'genlab/ref':>12}")
    for case in CASES:
        if args.only and case.name not in args.only:
            continue
        config = EXPERIMENTS / f"{case.name}.yaml"
        if not config.exists():
            print(f"{case.name:<15}  (no {config.name} yet)")
            continue
        iterations = args.iterations or case.iterations
        cli = build(config, args.data_dir, [])
        cli.datamodule.prepare_data()
        cli.datamodule.setup("fit")
        batches = reference_batches(cli.datamodule, cli.datamodule.batch_size)
        reference = gan_reference_step if isinstance(cli.model, GAN) else vae_reference_step
        step = reference(cli.model, batches)
        ref_rate = time_reference(step, case.warmup, iterations)
        genlab_rate = time_genlab(cli, case.warmup, iterations, args.precision)
        print(f"{case.name:<15}{ref_rate:>16.2f}{genlab_rate:>14.2f}{genlab_rate / ref_rate:>11.2f}x", flush=True)
        if case.name == "dcgan_mnist":
            flops = flops_per_iteration(step)
            print(f"{'':<15}DCGAN: {flops / 1e9:.1f} GFLOP per iteration; genlab achieves"
                  f" {flops * genlab_rate / 1e9:.1f} GFLOP/s = {flops * genlab_rate / 1e9 / fp32_peak:.0%} of the fp32"
                  f" matmul peak (reference {flops * ref_rate / 1e9 / fp32_peak:.0%})")


if __name__ == "__main__":
    main()
