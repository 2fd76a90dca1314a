"""How long `genlab report` takes and how big its page is for a long run, however many grids it saved.

    python benchmarks/report_size.py                     # 20,000 iterations, 100 grids, scalars every 50 iterations
    python benchmarks/report_size.py --log-every 1       # every iteration logged: the longest event file
    python benchmarks/report_size.py --grids 400 --iterations 50000 --keep /tmp/big-run

Fabricates a run folder without training: config.yaml, one event file with 8 scalars logged every `--log-every`
iterations (50, as every experiment YAML has it) plus the grids as TensorBoard images (SampleGrid logs each),
`samples/iteration_*.png` (64 noisy 28x28 tiles each: they compress badly, the worst case for size), a metrics.jsonl
record every 1,000 iterations, interpolation and label-histogram figures, a checkpoint. Then times
`genlab.report.write_report` (the libraries imported beforehand, as in a `genlab report` process after its start-up)
and prints the time, the page's size, and whether both are within the budget (10 s, 5 MB; the exit status is 1 when
one is not), then the time of the whole `genlab report` command, Python's start-up and imports included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUDGET_SECONDS, BUDGET_MB = 10.0, 5.0


def grid_image(rng: np.random.Generator, tiles: int = 8, size: int = 28) -> np.ndarray:
    """A SampleGrid-shaped picture: tiles x tiles noisy digits-sized tiles with 2-pixel white padding."""
    side = tiles * (size + 2) + 2
    picture = np.full((side, side), 255, np.uint8)
    for row in range(tiles):
        for column in range(tiles):
            top, left = 2 + row * (size + 2), 2 + column * (size + 2)
            picture[top:top + size, left:left + size] = rng.integers(0, 256, (size, size), dtype=np.uint8)
    return picture


def write_events(folder: Path, iterations: int, grids: list[tuple[int, np.ndarray]], every: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder), max_queue=10_000)
    tags = ["loss/d", "loss/g", "d/real", "d/fake", "grad_norm/d", "grad_norm/g", "classifier/fd", "classifier/is"]
    for step in range(every, iterations + 1, every):
        for index, tag in enumerate(tags):
            writer.add_scalar(tag, (index + 1) * 100.0 / step + 0.01 * np.sin(step), step, walltime=1e9 + step / 8)
    for step, picture in grids:
        writer.add_image("samples", picture[None], step, walltime=1e9 + step / 8)
    writer.close()


def write_files(folder: Path, iterations: int, count: int, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    from PIL import Image

    (folder / "samples").mkdir(parents=True)
    grids = []
    for index in range(1, count + 1):
        step = index * iterations // count
        picture = grid_image(rng)
        Image.fromarray(picture).save(folder / "samples" / f"iteration_{step:07d}.png")
        grids.append((step, picture))
    for kind, names in (("interpolation", ["same_class", "different_classes"]),
                        ("metrics", [f"label_histogram-fit-iteration_{s:07d}"
                                     for s in range(1000, iterations + 1, 1000)])):
        (folder / kind).mkdir()
        for name in names:
            Image.fromarray(rng.integers(0, 256, (300, 600, 3), dtype=np.uint8)).save(folder / kind / f"{name}.png")
    return grids


def write_records(folder: Path, iterations: int) -> None:
    with open(folder / "metrics.jsonl", "w") as file:
        file.writelines(json.dumps({
                "iteration": iteration, "stage": "fit", "num_fake": 10000, "num_real": 10000, "real_split": "val",
                "scores": {"classifier/is": 9 - 1000 / iteration, "classifier/fd": 1000 / iteration},
                "real_values": {"split": "train", "count": 10000, "scores": {"classifier/is": 9.8}},
                "settings": {"classifier": {"network": "ConvClassifier", "splits": 10}},
                "sampling": {"seed": 0, "batch_size": 500, "device": "cpu"},
                "label_histogram": {"generated": list(range(10)), "real": list(range(10))}}) + "\n"
            for iteration in range(1000, iterations + 1, 1000))


def fabricate(folder: Path, iterations: int, grids: int, every: int, seed: int = 0) -> Path:
    """A run folder as a long run leaves it."""
    import torch
    import yaml

    run = folder / "fabricated" / "version_0"
    run.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    (run / "config.yaml").write_text("# lightning.pytorch==2.6.6\n" + yaml.safe_dump({
        "seed_everything": 0, "model": {"class_path": "genlab.models.GAN"},
        "data": {"class_path": "genlab.data.MNISTDataModule"}, "trainer": {"precision": "32-true"}}))
    write_events(run, iterations, write_files(run, iterations, grids, rng), every)
    write_records(run, iterations)
    (run / "checkpoints").mkdir()
    torch.save({"epoch": 42, "genlab_iterations": iterations, "state_dict": {"w": torch.zeros(1000, 1000)}},
               run / "checkpoints" / "last.ckpt")
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--grids", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=50, help="iterations between logged scalars")
    parser.add_argument("--keep", type=Path, default=None, help="fabricate the run here and keep it")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = arguments.keep or Path(scratch)
        started = time.perf_counter()
        run = fabricate(root, arguments.iterations, arguments.grids, arguments.log_every)
        events_mb = sum(p.stat().st_size for p in run.glob("events.out.tfevents.*")) / 1e6
        print(f"fabricated {run} in {time.perf_counter() - started:.1f} s: {arguments.iterations:,} iterations,"
              f" {arguments.grids} grids, scalars every {arguments.log_every}, event file {events_mb:.1f} MB")
        import matplotlib.figure  # noqa: F401 - imported before timing, as in a started genlab process
        from tensorboard.backend.event_processing import event_accumulator  # noqa: F401

        from genlab.report import write_report

        started = time.perf_counter()
        page = write_report([run], root / "report.html")
        seconds, megabytes = time.perf_counter() - started, page.stat().st_size / 1e6
        started = time.perf_counter()  # the whole command: Python start-up and imports included
        subprocess.run([sys.executable, "-m", "genlab.launch", "report", str(run), "-o", str(root / "cli.html")],
                       check=True, capture_output=True)
        command = time.perf_counter() - started
    within = seconds < BUDGET_SECONDS and megabytes < BUDGET_MB
    print(f"report: {seconds:.2f} s, {megabytes:.2f} MB ({'within' if within else 'OVER'} the budget of"
          f" {BUDGET_SECONDS:.0f} s and {BUDGET_MB:.0f} MB); the `genlab report` command from start to end:"
          f" {command:.2f} s")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
