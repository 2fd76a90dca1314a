"""Time per iteration of a GAN under DDP: genlab's strategy (no wrapper, one all-reduce of each update's gradients)
against DDP with `find_unused_parameters=True` (what genlab used before), on the same machine, alternately.

    python benchmarks/ddp_overhead.py                       # gan_mnist and dcgan_mnist, 2 CPU processes
    python benchmarks/ddp_overhead.py --models toy_quadratic --iterations 300 --rounds 3

Each round runs `genlab fit` once per strategy (in alternating order, so a machine whose speed drifts slows both
alike) with 2 processes on the CPU (or `--accelerator gpu --devices N`), fp32, no evaluation, no checkpoints;
`IterationTimer` (rank 0) times the iterations after a warm-up. Prints the CPU capability, each run's seconds per
iteration and the median of each strategy. Data come from $GENLAB_DATA_DIR or `--data-dir`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = {"genlab (no wrapper)": "ddp", "find_unused_parameters": "ddp_find_unused_parameters_true"}


class IterationTimer(L.Callback):
    """Seconds per iteration after `warmup` iterations, printed by the first process at the end of the fit."""

    def __init__(self, warmup: int = 20) -> None:
        self.warmup, self.seen, self.start = warmup, 0, 0.0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.seen += 1
        if self.seen == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.seen > self.warmup:
            print(f"SECONDS_PER_ITERATION {(time.perf_counter() - self.start) / (self.seen - self.warmup):.6f}")


def run_once(model: str, strategy: str, args: argparse.Namespace, folder: Path) -> float:
    command = [sys.executable, "-m", "genlab.launch", "fit", "--config", str(REPO / "experiments" / f"{model}.yaml"),
               f"--trainer.strategy={strategy}", f"--trainer.devices={args.devices}",
               f"--trainer.accelerator={args.accelerator}", "--trainer.precision=32-true", "--memory_format=contiguous",
               "--evaluate=false", "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=0",
               f"--trainer.max_steps={2 * args.iterations}", "--trainer.max_epochs=1000", "--trainer.logger=false",
               "--checkpoint.every_n_iterations=1000000", "--trainer.enable_checkpointing=false",
               "--trainer.callbacks+=ddp_overhead.IterationTimer", f"--trainer.callbacks.warmup={args.warmup}"]
    if model != "toy_quadratic" and args.data_dir:
        command.append(f"--data.data_dir={args.data_dir}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "benchmarks"), str(REPO)])}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("SECONDS_PER_ITERATION")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"ddp_overhead: {model} with {strategy} failed:\n{done.stderr[-3000:]}")
    return float(lines[-1].split()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gan_mnist,dcgan_mnist")
    parser.add_argument("--iterations", type=int, default=120, help="iterations per run (warm-up included)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--data-dir", default=os.environ.get("GENLAB_DATA_DIR"))
    args = parser.parse_args(argv)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"{args.devices} processes on {args.accelerator}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models.split(","):
            times: dict[str, list[float]] = {name: [] for name in STRATEGIES}
            for round_index in range(args.rounds):
                order = list(STRATEGIES) if round_index % 2 == 0 else list(reversed(STRATEGIES))
                for name in order:
                    times[name].append(run_once(model, STRATEGIES[name], args, Path(folder)))
                    print(f"  {model:14s} round {round_index}: {name:24s} {times[name][-1] * 1e3:8.2f} ms/iteration")
            medians = {name: statistics.median(values) for name, values in times.items()}
            before, after = medians["find_unused_parameters"], medians["genlab (no wrapper)"]
            print(f"{model}: find_unused_parameters {before * 1e3:.2f} ms, genlab {after * 1e3:.2f} ms per iteration"
                  f" (median of {args.rounds}): {before / after:.2f}x")


if __name__ == "__main__":
    main()
