"""Does memory stay flat over a long run? Runs `genlab fit` in a subprocess and samples its resident memory.

    python benchmarks/memory.py                                   # toy GAN, 20,000 iterations (~4 min on 2 cores)
    python benchmarks/memory.py --config experiments/dcgan_emoji.yaml --iterations 20000 --args --evaluate=false

Prints the resident set size (RSS) and the run folder's size on disk after each tenth of the run, and the RSS
growth between the first tenth (once everything is allocated and warm) and the end. A leak — tensors kept in logs or
callbacks — shows as steady growth; a flat run grows by a few MB at most (allocator noise, TensorBoard buffers).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def folder_mb(folder: Path) -> float:
    """Bytes under `folder`, in MB (files vanish while a run renames them: those are skipped)."""
    total = 0
    for path in folder.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            pass
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "experiments" / "toy_quadratic.yaml"))
    parser.add_argument("--iterations", type=int, default=20_000, help="training batches (n_critic 1 assumed)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--args", nargs=argparse.REMAINDER, default=[], help="more genlab fit arguments")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "genlab.cli", "fit", "--config", options.config,
                   f"--trainer.max_steps={2 * options.iterations}", "--trainer.max_epochs=-1",
                   "--trainer.enable_progress_bar=false", *options.args]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.time()
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        samples: list[tuple[float, float]] = []
        disk_samples: list[float] = []
        while process.poll() is None:
            try:
                samples.append((time.time() - started, rss_mb(process.pid)))
                disk_samples.append(folder_mb(Path(folder)))
            except FileNotFoundError:
                break
            time.sleep(options.interval)
        if process.returncode:
            sys.exit(f"genlab fit failed ({process.returncode}): {process.stderr.read()[-2000:]}")
        disk = folder_mb(Path(folder))

    total = samples[-1][0]
    print(f"{options.iterations} iterations of {Path(options.config).name} in {total:.0f} s;"
          " RSS (MB) by tenth of the run:")
    indices = [min(range(len(samples)), key=lambda i: abs(samples[i][0] - total * k / 10)) for k in range(1, 11)]
    marks = [samples[i] for i in indices]
    print("  " + "  ".join(f"{10 * k}%: {rss:.0f}" for k, (_, rss) in enumerate(marks, 1)))
    print("run folder on disk (MB) by tenth of the run:")
    print("  " + "  ".join(f"{10 * k}%: {disk_samples[i]:.1f}" for k, i in enumerate(indices, 1)))
    print(f"growth from 10% to the end: {marks[-1][1] - marks[0][1]:+.1f} MB; peak {max(r for _, r in samples):.0f} MB;"
          f" run folder on disk: {disk:.1f} MB")


if __name__ == "__main__":
    main()
