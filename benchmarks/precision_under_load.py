"""Whether a busy machine changes genlab's automatic precision: its timing, idle and beside spinning neighbours.

genlab times each generative model's training pass in fp32 and bf16 (`genlab.precision.measure_paths`) and
picks bf16-mixed where it is at least `MIN_SPEEDUP` times faster. A neighbour that takes a core during that
timing adds time to some passes; each path's fastest pass counts, so the ratio should hold. This script measures
it: for each experiment, `--repeats` timings with 0, 1, … busy neighbours (processes spinning on a core each,
started before and stopped after), printing each timing's bf16 speed-up and the choice it implies.

    python benchmarks/precision_under_load.py                         # gan_mnist, dcgan_mnist, vae_mnist
    python benchmarks/precision_under_load.py --models dcgan_mnist --neighbours 0,2 --repeats 5

The choice printed is the timing's alone (bf16 where ≥ MIN_SPEEDUP; a CPU without native bf16 is not timed): a
model whose bf16 runs are not on record as scoring like fp32 stays fp32 whatever the timing says
(`genlab.precision.bf16_refusal`). Run it on an otherwise idle machine: the neighbours are the only load it should
see (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # throughput.py, beside this file
from throughput import EXPERIMENTS, build, quiet

from genlab import precision
from genlab.runtime import cpu_has_native_bf16, cpu_model


def spinning(count: int) -> list[subprocess.Popen]:
    """`count` processes that each keep one core busy until stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def speedup(times: dict[str, float]) -> float:
    """fp32's time over bf16's, each in the layout genlab would pick (`genlab.precision.fastest_layout`)."""
    return precision.fastest_layout(times, precision.FP32)[1] / precision.fastest_layout(times, precision.BF16)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gan_mnist,dcgan_mnist,vae_mnist", help="experiment names")
    parser.add_argument("--neighbours", default=",".join(str(n) for n in sorted({0, 1, os.cpu_count() or 1})),
                        help="numbers of busy neighbours, comma-separated (default: none, one, one per core)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per model and number of neighbours")
    args = parser.parse_args()
    quiet()
    native = cpu_has_native_bf16()
    print(f"CPU {cpu_model()}, capability {torch.backends.cpu.get_cpu_capability()}, native bf16 {native},"
          f" {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads;"
          f" 1-minute load before: {os.getloadavg()[0]:.2f}; threshold {precision.MIN_SPEEDUP}x")
    if not native:
        raise SystemExit("this CPU has no native bf16: genlab never times bf16 here, so load cannot change its choice")
    print("| model | batch | neighbours | bf16 speed-up of each timing | choices |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as logs:
        for name in args.models.split(","):
            cli = build(EXPERIMENTS / f"{name}.yaml", logs, "32-true", "contiguous")
            batch = cli.datamodule.batch_size
            for count in (int(n) for n in args.neighbours.split(",")):
                neighbours = spinning(count)
                try:
                    time.sleep(1.0)  # the neighbours running before the timing starts
                    ratios = [speedup(precision.measure_paths(cli.model, batch, bf16=True))
                              for _ in range(args.repeats)]
                finally:
                    for neighbour in neighbours:
                        neighbour.kill()
                        neighbour.wait()
                choices = ["bf16" if ratio >= precision.MIN_SPEEDUP else "fp32" for ratio in ratios]
                print(f"| {name} | {batch} | {count} | {', '.join(f'{r:.2f}x' for r in ratios)} |"
                      f" {', '.join(choices)} |", flush=True)


if __name__ == "__main__":
    main()
