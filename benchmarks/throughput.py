"""Throughput: genlab's `fit` against the hand-written notebook loop it replaces, side by side in one process.

For each model the reference is what users write today: a plain PyTorch loop over a torchvision-style dataset
(`transforms.ToTensor()` per sample, plus `Normalize` to [-1, 1] for GANs; for EmojiOne a PIL decode per PNG;
for the toy GAN points drawn per batch in NumPy), a `DataLoader` with the YAML's batch size, shuffle, no
workers, fp32, one discriminator and one generator step per iteration (one ELBO step for the VAE).
genlab runs the experiment's YAML through `GenlabCLI(run=False)` as `genlab fit` would, with
`--evaluate=false`, no image callbacks (SampleGrid, ToyGANPlots, LatentInterpolation), no progress bar and
TensorBoard logging on (into a temporary folder). Checkpoint saving and per-epoch validation are left out:
they are periodic, not per iteration, and the reference has neither. Both sides start from identical copies of
the same freshly initialised networks, with the same batch size, optimizer and loss; each is timed after a
warm-up, and the two are timed in alternating blocks inside one fit (`Interleaved`: after each block of
genlab iterations the reference runs as many steps), so a machine whose speed drifts during the run - other
jobs, a virtual machine's stolen time - slows both sides alike and the ratio stays comparable. Each row has
its own interleaved reference figure.

    python benchmarks/throughput.py                                   # every model, ~20 s timed per side
    python benchmarks/throughput.py --models dcgan_mnist --iterations 60
    python benchmarks/throughput.py --models toy_quadratic,gan_mnist --threads 1

It also prints this machine's CPU capability, the precision genlab's automatic choice picks here
(`genlab.precision`: bf16-mixed only where bf16 is native and measured faster), the measured fp32 (and bf16)
matmul peak and, per model, the conv/linear FLOPs of one iteration and the fraction of the fp32 peak each side
achieves. genlab is timed on its default path (the automatic precision) and, where that is not fp32, in fp32
too, so the ratio of each to the same reference loop is read side by side. For the GANs a third row times the
reference iteration as a bare manual-optimization LightningModule on genlab's data module (fp32, no logging,
no divergence guard): the difference to the reference row is Lightning's own per-iteration cost, the
difference to genlab's fp32 row what genlab adds. The last column, `ceiling`, is the reference step's time over
that step without its data loading: the most any loop with the same networks in the same precision could reach
against the reference by feeding data for free (for a DCGAN ~1.01x: only bf16 or a faster layout gets past it).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from plain_steps import gan_plain_step, vae_plain_step  # benchmarks/plain_steps.py, beside this file
from torch.utils.flop_counter import FlopCounterMode

from genlab.callbacks import DenoisingTriplets, LatentInterpolation, SampleGrid, ToyGANPlots
from genlab.cli import GenlabCLI
from genlab.data import EmojiDataModule, FashionMNISTDataModule, MNISTDataModule, QuadraticDataModule
from genlab.likelihoods import Bernoulli
from genlab.models import GAN, VAE
from genlab.runtime import answer_gpu_checks_once_without_gpus, iterations_done

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
IMAGE_CALLBACKS = (SampleGrid, ToyGANPlots, LatentInterpolation, DenoisingTriplets)


def quiet() -> None:
    """Lightning's info lines (GPU available…, seed set…) and warnings (few workers…) would bury the table."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
    warnings.filterwarnings("ignore", module=r"torch\.utils\.data")
    warnings.filterwarnings("ignore", message=r".*(num_workers|does not have many workers|LeafSpec).*")


# --------------------------------------------------------------------------- reference data, as in the notebooks
class PNGFolder(torch.utils.data.Dataset):
    """The notebooks' image-folder dataset: a PIL decode, alpha compositing and ToTensor per sample."""

    def __init__(self, folder: Path, background: tuple[int, ...], transform: Callable) -> None:
        self.files = sorted(folder.glob("*.png"))
        if not self.files:
            raise SystemExit(f"throughput: no PNGs in {folder}: pass --data-dir (a root holding EmojiOne/png/32)")
        self.background, self.transform = tuple(background), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[index]) as image:
            rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*self.background, 255))
        return self.transform(Image.alpha_composite(canvas, rgba).convert("RGB")), 0


def reference_batches(datamodule: L.LightningDataModule, batch_size: int, normalize: bool) -> Iterator[torch.Tensor]:
    """Endless batches: [-1, 1] for GANs (`normalize`), [0, 1] intensities for the VAE."""
    if isinstance(datamodule, QuadraticDataModule):
        rng = np.random.default_rng(0)
        while True:
            x = rng.uniform(-datamodule.x_range, datamodule.x_range, batch_size)
            y = datamodule.a * x**2 + datamodule.b + datamodule.noise * rng.standard_normal(batch_size)
            yield torch.from_numpy(np.stack([x, y], axis=1)).float()
    if isinstance(datamodule, (MNISTDataModule, FashionMNISTDataModule)):
        transform = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))]) if normalize else T.ToTensor()
        dataset_class = (torchvision.datasets.FashionMNIST if isinstance(datamodule, FashionMNISTDataModule)
                         else torchvision.datasets.MNIST)
        dataset = dataset_class(os.fspath(datamodule.data_dir), train=True, transform=transform)
    elif isinstance(datamodule, EmojiDataModule):
        transform = T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)]) if normalize else T.ToTensor()
        dataset = PNGFolder(datamodule.image_folder, datamodule.background, transform)
    else:
        raise SystemExit(f"throughput: no reference loader for {type(datamodule).__name__}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)
    while True:
        for images, _ in loader:
            yield images


# --------------------------------------------------------------------------- reference training steps
def gan_reference_step(model: GAN, batches: Iterator[torch.Tensor]) -> Callable[[], None]:
    """One notebook GAN iteration (CS231n style): D on real and detached fakes, then G on fresh noise."""
    if model.num_classes or model.n_critic != 1 or model.gp_weight or model.clip_weights is not None:
        raise SystemExit("throughput: the reference loop covers unconditional GANs with n_critic 1,"
                         " no penalty or clipping")
    return gan_plain_step(model, batches)  # on the CPU (benchmarks/plain_steps.py)


def vae_reference_step(model: VAE, batches: Iterator[torch.Tensor]) -> Callable[[], None]:
    """One notebook VAE iteration, genlab's VAE exactly: encoder on intensities in [0, 1], reparameterised z,
    Bernoulli reconstruction (BCE on logits summed per image) + closed-form KL, both averaged over the batch."""
    if not isinstance(model.likelihood, Bernoulli):
        raise SystemExit("throughput: the VAE reference loop implements the Bernoulli likelihood only")
    return vae_plain_step(model, batches)  # on the CPU (benchmarks/plain_steps.py)


class BareLightningGAN(L.LightningModule):
    """The reference GAN iteration as the smallest manual-optimization LightningModule: no divergence guard, no
    gradient norms, no logging. Trained on genlab's own data module, it measures what Lightning's loop costs,
    apart from what genlab adds on top of it."""

    def __init__(self, model: GAN) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = copy.deepcopy(model.generator), copy.deepcopy(model.discriminator)
        self.source, self.loss = model, model.loss

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.source.discriminator_optimizer(self.discriminator.parameters()),
                self.source.generator_optimizer(self.generator.parameters())]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        real = batch[0]
        d_opt, g_opt = self.optimizers()
        fake = self.generator(self.source._draw_noise(len(real), None, real.device)).detach()
        d_loss = self.loss.discriminator(self.discriminator(real), self.discriminator(fake))
        d_opt.zero_grad()
        self.manual_backward(d_loss)
        d_opt.step()
        g_loss = self.loss.generator(self.discriminator(self.generator(self.source._draw_noise(len(real), None,
                                                                                             real.device))))
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        g_opt.step()


def time_bare_lightning(model: GAN, datamodule: L.LightningDataModule, step: Callable[[], None],
                        budget: Budget) -> tuple[float, float]:
    timer = Interleaved(step, budget)
    trainer = L.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(BareLightningGAN(model), datamodule)
    return timer.rates()


# --------------------------------------------------------------------------- timing
@dataclass
class Budget:
    """Warm-up iterations, then either a fixed number of timed iterations or as many as fit in `seconds`."""

    warmup: int
    iterations: int | None
    seconds: float

    def done(self, count: int, elapsed: float) -> bool:
        return count >= self.iterations if self.iterations else elapsed >= self.seconds and count >= 3


class Interleaved(L.Callback):
    """Times a Lightning fit and the reference loop in alternating blocks of the same number of iterations,
    inside the fit: after each block of fit iterations the reference runs as many steps, timed apart. A machine
    whose speed drifts (other jobs, a virtual machine's stolen time) slows both sides alike, so their ratio
    holds where timing one after the other does not. Blocks are about 1/`blocks` of the budget and at least
    `min_block` iterations, so neither side runs only cold. Stops the fit when its timed budget is spent."""

    def __init__(self, step: Callable[[], None], budget: Budget, blocks: int = 100, min_block: int = 5) -> None:
        self.step, self.budget, self.blocks, self.min_block = step, budget, blocks, min_block
        self.count = self.reference_count = self.in_block = 0
        self.seconds = self.reference_seconds = 0.0
        self.block, self.sized, self._start = min_block, False, 0.0

    def on_train_start(self, trainer: L.Trainer, *args: object) -> None:
        for _ in range(self.budget.warmup):  # the reference's own warm-up, before any timing
            self.step()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if iterations_done(trainer) <= self.budget.warmup:
            self._start = time.perf_counter()
            return
        self.count += 1
        self.in_block += 1
        if self.in_block < self.block:
            return
        self.seconds += synchronized_clock() - self._start
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            start = synchronized_clock()
            for _ in range(self.in_block):
                self.step()
            self.reference_seconds += synchronized_clock() - start
        self.reference_count += self.in_block
        self.in_block = 0
        if not self.sized:  # the first block sets the size
            target = (self.budget.iterations or self.budget.seconds * self.count / self.seconds) / self.blocks
            self.block, self.sized = max(self.min_block, round(target)), True
        if self.budget.done(self.count, self.seconds):
            trainer.should_stop = True
        self._start = time.perf_counter()

    def rates(self) -> tuple[float, float]:
        """(reference it/s, fit it/s) over the timed blocks (NaN if none was completed)."""
        if not self.reference_count:
            return float("nan"), float("nan")
        return self.reference_count / self.reference_seconds, self.count / self.seconds


def synchronized_clock() -> float:
    """The time once queued GPU work is done, so neither side's kernels are counted in the other's block."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def build(config: Path, logs: str, precision: str | None, memory_format: str = "auto") -> GenlabCLI:
    """The run `genlab fit --config <config> --evaluate=false` would train, not started yet."""
    args = [
        "--config", os.fspath(config), "--evaluate=false",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={logs}",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--trainer.max_epochs=-1", "--trainer.max_steps=-1",  # the timer stops the fit
    ]
    if precision:
        args.append(f"--trainer.precision={precision}")
    args.append(f"--memory_format={memory_format}")
    cli = GenlabCLI(args=args, run=False)
    cli.trainer.callbacks = [c for c in cli.trainer.callbacks
                             if not isinstance(c, (*IMAGE_CALLBACKS, ModelCheckpoint))]
    return cli


def data_free_ceiling(step: Callable[[], None], batches: Iterator[torch.Tensor], budget: Budget) -> float:
    """The reference step's time over that step without its data loading (per-sample `ToTensor`, collate), timed
    in alternating blocks: the most any loop running the same networks in the same precision can gain over the
    reference by feeding data for free. Beyond it only a faster path (bf16, a memory layout) helps."""
    count = max(3, min(budget.warmup or 3, 20))
    full = data = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(count):
            step()
        full += time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(count):
            next(batches)
        data += time.perf_counter() - start
    return full / (full - data)


def time_genlab(cli: GenlabCLI, step: Callable[[], None], budget: Budget) -> tuple[float, float]:
    """(reference it/s, genlab it/s), timed in alternating blocks (`Interleaved`)."""
    timer = Interleaved(step, budget)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, cli.datamodule)
    return timer.rates()


def matmul_peak(dtype: torch.dtype, size: int, repeats: int) -> float:
    """GFLOP/s of a square matmul: this machine's practical peak for dense linear algebra."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def bf16_peak(fp32: float) -> float:
    """bf16 matmul GFLOP/s; a quick 256² probe first, the full measurement only if bf16 looks competitive."""
    probe = matmul_peak(torch.bfloat16, 256, 3)
    return matmul_peak(torch.bfloat16, 2048, 5) if probe > fp32 / 4 else probe


def flops_per_iteration(step: Callable[[], None]) -> int:
    """Matmul/convolution FLOPs (forward and backward) of one reference iteration."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


@dataclass
class Case:
    name: str
    warmup: int


CASES = [
    Case("gan_mnist", 20),
    Case("dcgan_mnist", 5),
    Case("vae_mnist", 30),
    Case("toy_quadratic", 200),
    Case("dcgan_emoji", 20),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("GENLAB_DATA_DIR", "data"),
                        help="data root holding MNIST/raw and EmojiOne/png/32 (default: $GENLAB_DATA_DIR, else data)")
    parser.add_argument("--models", default=",".join(c.name for c in CASES),
                        help="comma-separated models (default: all of %(default)s)")
    parser.add_argument("--iterations", type=int, help="timed iterations per model and side (default: time-based)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="without --iterations: timed seconds per model and side (default %(default)s)")
    parser.add_argument("--warmup", type=int, help="warm-up iterations per side (default: per model, 5-200)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    parser.add_argument("--precision", help="genlab's precision for every model, e.g. bf16-mixed (default: the YAML's,"
                                            " else genlab's automatic choice)")
    args = parser.parse_args(argv)
    known = {case.name for case in CASES}
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    if unknown := [name for name in args.models if name not in known]:
        parser.error(f"unknown model {unknown[0]!r}: choose from {', '.join(sorted(known))}")
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if (args.warmup is not None and args.warmup < 0) or args.seconds <= 0:
        parser.error("--warmup must be 0 or more and --seconds positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    answer_gpu_checks_once_without_gpus()  # both sides alike from the start (genlab's fits would do it anyway)
    os.environ["GENLAB_DATA_DIR"] = args.data_dir  # every data module of the YAMLs reads it
    if args.threads:
        torch.set_num_threads(args.threads)

    fp32 = matmul_peak(torch.float32, 2048, 5)
    bf16_native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    bf16 = bf16_peak(fp32)
    print(f"machine: {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()},"
          f" oneDNN bf16 {'supported' if bf16_native else 'not supported'}")
    restricted = {name: os.environ[name] for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
                  if name in os.environ}
    if restricted:  # e.g. an AVX-512 CPU made to run the AVX2 kernels, to measure that path without such a CPU
        print("kernels restricted by " + ", ".join(f"{name}={value}" for name, value in restricted.items()))
    print(f"matmul peak: fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s")
    print("genlab's default path: the automatic precision, chosen per model by timing its networks in bf16 and"
          " fp32 (each row names the precision it ran)")
    budget_text = (f"{args.iterations} iterations" if args.iterations else f"{args.seconds:g} s") + " timed per side"
    print(f"genlab: YAML as `genlab fit --evaluate=false`, no image callbacks/checkpoints/validation, TensorBoard on;"
          f" {budget_text}" + (f"; genlab precision {args.precision}" if args.precision else ""))
    print()
    header = (f"{'model':<38}{'reference it/s':>15}{'genlab it/s':>13}{'genlab/ref':>11}"
              f"{'GFLOP/it':>10}{'% fp32 peak ref/genlab':>24}{'ceiling':>11}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for case in CASES:
        if case.name not in args.models:
            continue
        config = EXPERIMENTS / f"{case.name}.yaml"
        budget = Budget(args.warmup if args.warmup is not None else case.warmup, args.iterations, args.seconds)
        with tempfile.TemporaryDirectory() as logs:
            cli = build(config, logs, args.precision)
            model, default = cli.model, str(cli.trainer.precision)
            layout = ", channels_last" if cli.config.get("memory_format") == "channels_last" else ""
            reference = gan_reference_step if isinstance(model, GAN) else vae_reference_step
            batches = reference_batches(cli.datamodule, cli.datamodule.batch_size, normalize=isinstance(model, GAN))
            step = reference(model, batches)
            variants = [(f"{case.name} ({default}{layout})", *time_genlab(cli, step, budget))]
            if isinstance(model, GAN) and not args.precision:  # where the loop's own cost shows: tiny networks
                variants.append((f"{case.name} (bare Lightning)",
                                 *time_bare_lightning(model, cli.datamodule, step, budget)))
            flops = flops_per_iteration(step)
            ceiling = data_free_ceiling(step, reference_batches(cli.datamodule, cli.datamodule.batch_size,
                                                                 normalize=isinstance(model, GAN)), budget)
            if default != "32-true" or layout:
                cli = build(config, logs, "32-true", "contiguous")
                cli.model.load_state_dict(model.state_dict())
                variants.append((f"{case.name} (32-true, contiguous)", *time_genlab(cli, step, budget)))
        for name, ref_rate, rate in variants:
            peak = f"{flops * ref_rate / 1e9 / fp32:.0%} / {flops * rate / 1e9 / fp32:.0%}"
            print(f"{name:<38}{ref_rate:>15.2f}{rate:>13.2f}{rate / ref_rate:>10.2f}x{flops / 1e9:>10.3g}{peak:>24}"
                  f"{ceiling:>10.2f}x", flush=True)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
