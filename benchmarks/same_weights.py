"""Does a change leave training and scoring as they were? Trains short seeded runs with the code of another commit
and with this tree, and compares the final weights bit for bit (and, with `--classifiers`, the scores `genlab test`
writes for them, digit for digit).

    python benchmarks/same_weights.py --against 5f155a3
    python benchmarks/same_weights.py --against 5f155a3 --experiments dcgan_mnist --steps 60 \
        --classifiers /path/to/lightning_logs  # a folder holding classifier_mnist/ and classifier_mnist_reference/

Each side runs in fp32 and contiguous memory (the automatic precision and layout depend on the machine's load) with
seed 0, in a temporary folder; the other commit is checked out into a temporary git worktree, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def genlab(tree: Path, runs: Path, *args: str) -> None:
    """One genlab command with the code of `tree`, in `runs`."""
    command = [sys.executable, "-m", "genlab.cli", *args]
    done = subprocess.run(command, cwd=runs, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"same_weights: `genlab {' '.join(args[:3])} …` failed with {tree}:\n{done.stderr[-3000:]}")


def train_and_score(tree: Path, runs: Path, experiment: str, steps: int, classifiers: Path | None) -> dict:
    """The final weights of a short run and, when classifiers are given, the test record's scores."""
    runs.mkdir(parents=True)
    if classifiers is not None:
        (runs / "lightning_logs").mkdir()
        for folder in classifiers.iterdir():
            (runs / "lightning_logs" / folder.name).symlink_to(folder.resolve())
    config = ["--config", str(tree / "experiments" / f"{experiment}.yaml"), "--seed_everything=0",
              "--trainer.precision=32-true", "--memory_format=contiguous",
              f"--trainer.logger.init_args.name={experiment}", "--trainer.enable_progress_bar=false"]
    genlab(tree, runs, "fit", *config, f"--trainer.max_steps={steps}", "--evaluate=false")
    checkpoint = runs / "lightning_logs" / experiment / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    scores = {}
    if classifiers is not None:
        genlab(tree, runs, "test", *config, f"--ckpt_path={checkpoint}")
        record = runs / "lightning_logs" / experiment / "version_1" / "metrics.jsonl"
        scores = json.loads(record.read_text().splitlines()[-1])["scores"]
    return {"state": state, "scores": scores}


def same_number(a: object, b: object) -> bool:
    """Equal, or NaN on both sides (a score undefined for these samples is undefined either way)."""
    nan = [isinstance(x, float) and math.isnan(x) for x in (a, b)]
    return all(nan) or (not any(nan) and a == b)


def compare(before: dict, after: dict) -> list[str]:
    """What differs: tensors by name, scores by name (exact comparisons)."""
    differences = [name for name in sorted(set(before["state"]) | set(after["state"]))
                   if name not in before["state"] or name not in after["state"]
                   or not torch.equal(before["state"][name], after["state"][name])]
    differences += [f"{name}: {before['scores'].get(name)} against {after['scores'].get(name)}"
                    for name in sorted(set(before["scores"]) | set(after["scores"]))
                    if not same_number(before["scores"].get(name), after["scores"].get(name))]
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the commit to compare this tree with")
    parser.add_argument("--experiments", default="dcgan_mnist,vae_mnist")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps of each run (default %(default)s)")
    parser.add_argument("--classifiers", type=Path, help="a lightning_logs folder with the classifiers the configs"
                        " name: also compare the scores of `genlab test`")
    args = parser.parse_args()
    print(f"same_weights: this tree against {args.against}; torch {torch.__version__},"
          f" CPU capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    failed = False
    with tempfile.TemporaryDirectory() as temporary:
        other = Path(temporary) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), args.against], cwd=REPO, check=True)
        try:
            for experiment in args.experiments.split(","):
                sides = [train_and_score(tree, Path(temporary) / label / experiment, experiment, args.steps,
                                         args.classifiers) for tree, label in ((other, "before"), (REPO, "after"))]
                differences = compare(*sides)
                failed |= bool(differences)
                what = f"{len(sides[0]['state'])} tensors" + (f", {len(sides[0]['scores'])} scores"
                                                              if sides[0]["scores"] else "")
                verdict = "bit-identical" if not differences else f"DIFFERENT: {differences[:8]}"
                print(f"  {experiment}, {args.steps} steps: {what}: {verdict}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=REPO, check=False)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
