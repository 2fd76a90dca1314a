"""Train every experiment to its configured end, score it with `genlab test`, and write RESULTS.md.

    python benchmarks/reproduce.py                          # everything (hours on a CPU; resumable)
    python benchmarks/reproduce.py --experiments toy_quadratic,vae_mnist
    python benchmarks/reproduce.py --table-only             # rewrite RESULTS.md from what has finished

Resumable: a run whose fit finished is not trained again, a run that was killed continues with
`--ckpt_path last`, a run already tested is not tested again. Every run lives in
`<runs>/lightning_logs/<experiment>-seed<k>/`; `<runs>/results/<experiment>-seed<k>.json` marks it done, and its copy
in `docs/results/` (committed) holds what the table needs (the test record with its whole protocol, wall time,
iterations): the table is written from `docs/results/`, so rows run on other days or machines stay. Classifiers
are trained first, since the
generators' scores need them. Inception scores are computed only where the official weights file is present
(checked by SHA-256); otherwise the row says "weights not available" and dcgan_emoji trains without them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from genlab.atomic_files import file_sha256
from genlab.training.checkpoints import last_checkpoint

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    """One experiment of the table and what its reference reports."""

    name: str
    seeds: tuple[int, ...] = (0,)
    experiment: str = ""  # the YAML under experiments/ (default: `name`); a row with another name is a variant
    overlays: tuple[str, ...] = ()  # YAMLs under experiments/overlays/ a variant adds, in order
    arguments: tuple[str, ...] = ()  # settings a variant adds (genlab command-line arguments)
    fit_arguments: tuple[str, ...] = ()  # settings for training only (a precision: `genlab test` scores in fp32)
    reference: str = "no number in the reference"
    protocol: str = ""
    headline: tuple[str, ...] = ()  # score names shown, in order
    filmstrip: bool = False  # also keep 5 evenly spaced grids of the run side by side
    observed: str = ""  # what a person saw in the grids (written after looking at them; shown under the table)
    observed_grid: str = ""  # the SHA-256 prefix of the seed-0 grid looked at: a newer run's grid is not described
    history: tuple[str, ...] = ()  # scores shown at every evaluation during training, seed by seed

    def run_name(self, seed: int) -> str:
        """The logger name of a run: the experiment's own for single-seed rows (so the generators' configs find
        `lightning_logs/classifier_mnist`), with the seed otherwise."""
        return self.name if len(self.seeds) == 1 else f"{self.name}-seed{seed}"

    @property
    def yaml(self) -> str:
        return self.experiment or self.name

    @property
    def needs(self) -> tuple[str, ...]:
        """The classifier experiments it is scored with: those its YAML and overlays name (`lightning_logs/<name>`),
        read from them so the pins checked before and after a run are the ones the run loads (a classifier named
        only in `arguments` is caught by the check after its test)."""
        files = [REPO / "experiments" / f"{self.yaml}.yaml",
                 *(REPO / "experiments" / "overlays" / f"{overlay}.yaml" for overlay in self.overlays)]
        named = [name for file in files for name in classifiers_named(yaml.safe_load(file.read_text()))]
        return tuple(dict.fromkeys(named))


def classifiers_named(config: object) -> tuple[str, ...]:
    """The run names under `lightning_logs/` a parsed YAML loads, in order of appearance (each once)."""
    if isinstance(config, dict):
        found = [name for value in config.values() for name in classifiers_named(value)]
    elif isinstance(config, list):
        found = [name for value in config for name in classifiers_named(value)]
    elif isinstance(config, str) and config.removeprefix("./").startswith("lightning_logs/"):
        found = [config.removeprefix("./").split("/")[1]]  # the run name, whatever file inside it is named
    else:
        found = []
    return tuple(dict.fromkeys(found))


REFERENCE_IS = ("reference/is", "classifier/is", "classifier/fd", "classifier/label_tv")
CNN_SCORES = ("classifier/is", "classifier/fd", "classifier/label_tv")
SMALL_DATA_OBSERVED = {  # seed 0's final grids, looked at side by side: (the grid's SHA-256 prefix, what was seen)
    (1000, False): ("7249f82f6e53", ("Garments of a few kinds - mostly tops and pullovers, some sneakers and boots - in"
                    " a grainy, speckled texture, several tiles near-copies of one another.")),
    (1000, True): ("49ca8b706007", ("Cleaner silhouettes of more kinds - trousers, dresses, bags, sandals and boots"
                   " beside the tops - with smooth shading; a few tiles are over-bright white shapes.")),
    (5000, False): ("95d04cae71cf", ("Many tops and pullovers with a fine speckled texture, some sneakers and trousers;"
                    " varied but noisy.")),
    (5000, True): ("9dad3b70cc8f", ("Smoother garments of every kind; a handful of tiles are saturated white blobs or"
                   " fragments.")),
}
SMALL_DATA_SCORES = ("classifier/fd", "classifier/precision", "classifier/recall", "classifier/is",
                     "classifier/label_tv")
EMA = ("--model.init_args.ema_decay=0.999",)
BF16 = ("--trainer.precision=bf16-mixed",)
FP32 = "32-true"  # the precision of a row that names none (genlab's automatic choice depends on the machine)
EMA_SCORES = tuple(f"classifier/{score}{weights}" for score in ("fd", "is", "precision", "recall", "label_tv")
                   for weights in ("", "@ema"))
REF_PROTOCOL = ("reference MLP classifier (784-512-512-10, dropout active at evaluation), one split,"
                " +1e-10 inside the log")
ROWS = [
    Row("classifier_mnist", reference="(genlab's evaluation CNN)", headline=("test/acc",)),
    Row("classifier_mnist_reference", reference="test accuracy 0.9794 / 0.9798",
        protocol="001 cells [256], 5.0.2: 10,000 test images, dropout active", headline=("test/acc",)),
    Row("classifier_fashion", reference="(genlab's evaluation CNN)", headline=("test/acc",)),
    Row("toy_quadratic", reference="plots only", headline=("curve_distance", "sliced_wasserstein")),
    Row("dcgan_mnist", seeds=(0, 1, 2), reference="IS 9.3821 (bar 8.5)",
        protocol=f"001 cell [28]: 10,000 samples in one batch, BatchNorm in training mode; {REF_PROTOCOL}",
        headline=(*REFERENCE_IS, "reference/is@running"), history=("reference/is", "classifier/fd")),
    Row("vae_mnist", seeds=(0, 1, 2), reference="IS 9.0851 (bar 9.0)",
        protocol=f"001 cell [261]: 100,000 N(0, I) samples; {REF_PROTOCOL}",
        headline=(*REFERENCE_IS, "reference/is@mixture", "classifier/is@mixture", "test/loss/recon")),
    Row("gan_mnist", seeds=(0, 1, 2), headline=REFERENCE_IS,
        reference="no number (the cell's output is hidden)",
        observed="All three seeds collapse under the notebook's setting (noise U(-1, 1) of dimension 10, Adam 1e-3"
                 " with betas (0.5, 0.4999), 10 epochs): seed 0's final grid is one thin stroke (a 1) in all 64 tiles,"
                 " seed 1's the same speckle noise in every tile. The notebook's own loop"
                 " (`python benchmarks/reference_loop.py gan --seeds 0`) collapses the same way: after 2-4 epochs all"
                 " 64 tiles are one speckled shape (the discriminator wins;"
                 " docs/results/gan_mnist-notebook-loop-seed0-epoch4.png). So it is the setting, not genlab: with"
                 " experiments/overlays/adam_beta2_0999.yaml (Adam's 0.999 instead of 0.4999) seed 0 trains into"
                 " varied digits (row gan_mnist_beta2_0999_ema, 3 seeds).",
        observed_grid="c03483f86cd9"),
    Row("dcgan_emoji", reference="FID of ~3,000 samples (value not given)",
        protocol="003: FID against the training images; Inception variant not stated",
        headline=("inception/fid", "inception/kid", "inception/is"), filmstrip=True,
        observed="Looked at every 200 iterations (fixed noise, 64 tiles; filmstrip: iterations 200, 5,200, 10,200,"
                 " 15,000, 20,000). Iteration 200: grey-brown blobs, all alike. 1,000: coloured blobs with a"
                 " checkerboard pattern from the transposed convolutions. From ~5,000: emoji-like shapes - round"
                 " yellow faces, heads with hair, hands, flags, food - on the white background. At 20,000 many"
                 " tiles are recognisable smileys with eyes and mouth and the 64 tiles are all different (no"
                 " collapse), but details are smeared (mouths and eyes misplaced, colours bleeding) and roughly one"
                 " tile in eight is a washed-out fragment; between 10,000 and 20,000 the quality changes little"
                 " while tiles keep changing identity (the generator has not settled).",
        observed_grid="ab363a8ec3bc"),
    Row("lsgan_mnist", headline=REFERENCE_IS, reference="no number (the cell's output is hidden)",
        observed="Collapses like gan_mnist under the same optimizer setting: every tile of the final grid is the"
                 " same faint slanted stroke in heavy black-and-white speckle, the background ranging from mostly"
                 " black to mostly white.",
        observed_grid="f510ce26dabd"),
    Row("dae_mnist", reference="denoised images shown, no number",
        headline=("test/psnr/noisy_region", "test/psnr/restored_region", "test/psnr/noisy", "test/psnr/restored")),
    Row("gan_fashion", reference="IS 17.09 (not comparable)",
        protocol="000: ImageNet Inception-v3 on 10 samples, KL to the uniform distribution (a known mistake)",
        headline=CNN_SCORES),
    Row("dcgan_fashion", headline=CNN_SCORES, fit_arguments=BF16,
        observed="Trained in bf16 (5 epochs): 64 varied garments - sneakers, ankle boots, shirts, pullovers,"
                 " trousers, dresses, bags, a few sandals - with plausible shading and some texture; several tiles are"
                 " dark or fragmentary (the first tile of the fourth row, the third of the sixth); no collapse.",
        observed_grid="200f1b9b52b6"),
    Row("wgan_mnist", headline=CNN_SCORES,
        observed="After 20 epochs (17,180 critic steps with weight clipping, 3,436 generator steps) the tiles are"
                 " blurred, ring- and hook-shaped strokes; a few read as 0, 1, 3 or 9, most as none; varied, but"
                 " less finished than WGAN-GP's (one seed each: not a measured difference), as clipping is known to"
                 " train more slowly; longer runs were not measured.",
        observed_grid="84fb24a7f695"),
    Row("wgan_gp_mnist", headline=CNN_SCORES,
        observed="After 20 epochs (17,180 critic steps, 3,436 generator steps) the 64 tiles are varied but"
                 " unfinished: about half are recognisable digits (0, 1, 3, 8, 9 most often), the rest broken strokes"
                 " and blobs, with grey haze around them; no collapse but far from the data."
                 " With n_critic 5 the generator made only 3,436 updates; whether"
                 " longer training closes the gap was not measured.",
        observed_grid="ad2fa9741993"),
    Row("wgan_fashion", headline=CNN_SCORES,
        observed="After 20 epochs (17,180 critic steps with weight clipping, 3,436 generator steps, fp32): soft,"
                 " blurred garment silhouettes - pullovers and shirts most, some trousers, sneakers, boots and bags -"
                 " without"
                 " texture, with ghostly grey halos; classes vary but each is drawn in few ways (the"
                 " recall in the record), as clipping trains slowly.",
        observed_grid="86aceca206f2"),
    Row("wgan_gp_fashion", headline=CNN_SCORES,
        observed="After 20 epochs (fp32) the garments are recognisable by outline only - shirts, trousers, boots, bags"
                 " - blurred and blocky, with vertical streaks; classes vary but each is drawn in a"
                 " narrow range: with 5 critic steps per generator step the generator made 3,436 updates.",
        observed_grid="21a34582dbe5"),
    Row("cgan_mnist", headline=(*CNN_SCORES, "classifier/label_accuracy"),
        observed="One row per requested class (fixed noise, labels 0-9 down the rows): every row shows its digit,"
                 " in varied slants and widths, with speckle noise around the strokes (the MLP generator's tanh"
                 " output); the 2s and 4s are the most malformed and several 8s are thin or broken.",
        observed_grid="49668f75a02b"),
    Row("cgan_fashion", headline=(*CNN_SCORES, "classifier/label_accuracy"),
        observed="One row per requested class (T-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag,"
                 " ankle boot down the rows): T-shirts, trousers and dresses are clear silhouettes, sneakers and"
                 " boots recognisable; the pullover, coat and shirt rows draw similar long-sleeved shapes (the"
                 " per-class label accuracy in the record says how often the classifier tells them apart); sandals"
                 " are dim fragments and bags vague blobs; every tile carries the MLP generator's speckle, and"
                 " within a row the tiles vary little.",
        observed_grid="f7d295721cc4"),
    Row("cgan_conv_mnist", headline=(*CNN_SCORES, "classifier/label_accuracy"), fit_arguments=BF16,
        observed="One row per requested class (fixed noise, labels 0-9 down the rows, 10 tiles each): every tile is a"
                 " clean digit of its row's class, in varied slants and stroke widths, without the MLP generator's"
                 " speckle; a few carry small blots or heavy strokes, and one tile of the 3 row reads more like a 5,"
                 " which the label accuracy leaves room for.",
        observed_grid="c200b08f3571"),
    Row("dcgan_mnist_ema", experiment="dcgan_mnist", seeds=(0, 1, 2), arguments=EMA, headline=EMA_SCORES,
        fit_arguments=BF16,
        reference="(genlab's generator EMA, issue 16)",
        protocol="dcgan_mnist with an EMA of the generator (decay 0.999, 1,000 warm-up iterations), trained in"
                 " bf16-mixed (what genlab's automatic precision picks for the DCGAN where bf16 is native and timed"
                 " faster; the layout as timed on the machine): the raw generator trains as dcgan_mnist would in"
                 " that precision (its scores are the fast path's, to set beside dcgan_mnist's fp32 seeds), `@ema`"
                 " scores the average in the same evaluation",
        observed="Raw generator (first grid) and its average (second), seed 0, same noise: the same varied digits"
                 " tile for tile, with the same few broken tiles (blots in the second and last rows); the differences"
                 " are slight, as after 2,345 iterations the average spans only the last ~1,300 (1,000 warm-up"
                 " iterations); the"
                 " comparisons below give the scores (average against raw, and the bf16 raw generator against"
                 " dcgan_mnist's fp32).",
        observed_grid="3c597f33d768"),
    *(Row(f"dcgan_fashion_{size // 1000}k{'_diffaugment' if augmented else ''}", experiment="dcgan_fashion_small",
          seeds=(0, 1, 2), overlays=("diffaugment",) * augmented, arguments=(f"--data.init_args.train_subset={size}",),
          fit_arguments=BF16, headline=SMALL_DATA_SCORES, reference="(DiffAugment, issue 24)",
          protocol=f"dcgan_fashion's DCGAN on {size:,} Fashion-MNIST training images (data.train_subset, the same"
                   f" images for every seed), 2,000 iterations in bf16-mixed (scored in fp32)"
                   + (", DiffAugment color,translation,cutout" if augmented else ", no augmentation"),
          observed=SMALL_DATA_OBSERVED[size, augmented][1], observed_grid=SMALL_DATA_OBSERVED[size, augmented][0])
      for size in (1000, 5000) for augmented in (False, True)),
    Row("gan_mnist_beta2_0999_ema", experiment="gan_mnist", seeds=(0, 1, 2), overlays=("adam_beta2_0999",),
        arguments=EMA, headline=EMA_SCORES, reference="(genlab's generator EMA, issue 16)",
        protocol="gan_mnist with Adam betas (0.5, 0.999) (the reference's 0.4999 collapses, see gan_mnist) and an EMA"
                 " of the generator (decay 0.999, 1,000 warm-up iterations); `@ema` scores the average",
        observed="Raw generator (first grid) and its average (second), seed 0, from the same fixed noise: varied"
                 " digits of every class, the same digit in almost every tile of both (the average follows the"
                 " generator), but the average's strokes are smoother and most of the raw generator's"
                 " salt-and-pepper speckle is gone; the few malformed tiles (a bold blob in the fifth row, smeared"
                 " shapes in the sixth and seventh) are malformed in both.",
        observed_grid="ea6e17faa628"),
    Row("gan_mnist_beta2_0999_bf16", experiment="gan_mnist", seeds=(0, 1, 2), overlays=("adam_beta2_0999",),
        fit_arguments=BF16, headline=REFERENCE_IS,
        reference="(fast path, issue 17)",
        protocol="gan_mnist with Adam betas (0.5, 0.999), trained in bf16-mixed (scored in fp32): compare with the raw"
                 " scores of gan_mnist_beta2_0999_ema, the same runs in fp32 (the average does not change training)",
        observed="Seed 0's final grid looks like the fp32 runs' (gan_mnist_beta2_0999_ema): varied digits of most"
                 " classes in speckled strokes, a few malformed tiles, no collapse; the comparison below gives the"
                 " scores.",
        observed_grid="b62369e562ce"),
    Row("vae_mnist_bf16", experiment="vae_mnist", seeds=(0, 1, 2), fit_arguments=BF16,
        headline=(*REFERENCE_IS, "test/loss/recon"), reference="(fast path, issue 17)",
        protocol="vae_mnist trained in bf16-mixed (scored in fp32): compare with vae_mnist's fp32 seeds; the evidence"
                 " for letting genlab's automatic precision choose bf16 for the MLP VAE",
        observed="Seed 0's grid looks like the fp32 runs' (smooth, slightly blurred digits of most classes, a few"
                 " ambiguous shapes); the comparison below gives the scores, on which the MLP VAE's automatic bf16"
                 " rests. (Speed:"
                 " benchmarks/throughput.py measures fp32 and bf16 side by side; the wall times"
                 " of these rows come from different days and loads.)",
        observed_grid="c96bd424caf1"),
    Row("vae_conv_mnist",
        headline=("classifier/is", "classifier/fd", "classifier/label_tv", "test/loss/recon", "test/nll_iwae100",
                  "test/active_units"),
        protocol="its YAML's sampler: a 50-Gaussian mixture fitted to the training codes; NLL: IWAE bound with 100"
                 " samples on grey-level MNIST under the Bernoulli likelihood (not comparable to binarized-MNIST"
                 " figures), active units of 20",
        observed="Mixture samples from fixed noise: 64 well-formed digits of every class, strokes smooth and a little"
                 " soft at the edges as VAE samples are, no speckle; a few shapes are faint or ambiguous (the first"
                 " tile of the third row, the fifth of the seventh).",
        observed_grid="58622d933088"),
]


def source_version() -> str:
    """The commit the runs were made with (and whether the tree had changes), so a row says what code made it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # the table and records this script writes itself are not changes to the code
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!RESULTS.md", ":!docs/results")
    return commit + ("+changes" if changed else "")


def official_inception_weights() -> bool:
    from genlab.metrics.inception import WEIGHTS_SHA256_PREFIX, default_weights_path

    path = default_weights_path()
    return path.is_file() and file_sha256(path).startswith(WEIGHTS_SHA256_PREFIX)


class Reproduction:
    def __init__(self, runs: Path, docs: Path, extra: list[str], precision: str | None = None) -> None:
        self.runs, self.docs, self.extra, self.precision = runs, docs, extra, precision
        self.results = runs / "results"
        self.results.mkdir(parents=True, exist_ok=True)

    def genlab(self, *args: str) -> float:
        """Run one genlab command in the runs folder; returns its wall time in seconds."""
        command = [sys.executable, "-m", "genlab.cli", *args, *self.extra]
        print("+", " ".join(command[2:]), flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=self.runs, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
        if done.returncode != 0:
            raise SystemExit(f"reproduce: `genlab {' '.join(args)}` failed (exit {done.returncode}); fix it and rerun"
                             " this script: finished runs are kept")
        return time.perf_counter() - start

    def pinned_classifiers(self, row: Row) -> set[str]:
        """The checkpoint hashes of the classifiers `row` is scored by, as recorded when each was trained: the whole
        table is scored by one set, so a classifier whose checkpoint has since changed stops the script."""
        pins = set()
        for need in row.needs:
            result = self.results / f"{need}-seed0.json"
            if not result.is_file():
                raise SystemExit(f"reproduce: {row.name} is scored by {need}, which has not finished; run it first")
            pinned = json.loads(result.read_text()).get("checkpoint_sha256", "")
            current = last_checkpoint(self.runs / "lightning_logs" / need)
            if current is None or file_sha256(current)[:12] != pinned:
                raise SystemExit(f"reproduce: {need}'s checkpoint ({current}) is not the one this table is scored by"
                                 f" ({pinned}); restore it, or start the table in a new --runs folder")
            pins.add(pinned)
        return pins

    def run(self, row: Row, seed: int, evaluate: bool) -> None:
        label = row.run_name(seed)
        result_file = self.results / f"{row.name}-seed{seed}.json"
        if result_file.is_file():
            return
        pins = self.pinned_classifiers(row)  # before anything slow runs
        overlays = [f"--config={REPO / 'experiments' / 'overlays' / name}.yaml" for name in row.overlays]
        config = ["--config", str(REPO / "experiments" / f"{row.yaml}.yaml"), *overlays, *row.arguments,
                  f"--seed_everything={seed}", f"--trainer.logger.init_args.name={label}",
                  "--trainer.enable_progress_bar=false",
                  *([] if evaluate else ["--evaluate=false"])]
        training = list(row.fit_arguments)
        if self.precision and row.needs:  # generators only: the classifiers that score them stay fp32
            training.append(f"--trainer.precision={self.precision}")
        elif not any(argument.startswith("--trainer.precision") for argument in training):
            training.append(f"--trainer.precision={FP32}")  # each row says its precision: it regenerates anywhere
        run_dir = self.runs / "lightning_logs" / label / "version_0"
        timing = run_dir / "reproduce_fit_seconds.json"
        if not (run_dir / "fit.done").is_file():
            resume = ["--ckpt_path=last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
            commit = source_version()  # what trains, not what is checked out when the table is written
            seconds = self.genlab("fit", *config, *training, *resume)
            before = json.loads(timing.read_text()) if timing.is_file() else {"seconds": 0.0, "commits": []}
            timing.write_text(json.dumps({"seconds": before["seconds"] + seconds,
                                          "commits": [*before.get("commits", []), commit]}))
            (run_dir / "fit.done").write_text("")
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        before = set((self.runs / "lightning_logs" / label).glob("version_*"))
        self.genlab("test", *config, f"--ckpt_path={checkpoint}")
        test_dir = max(set((self.runs / "lightning_logs" / label).glob("version_*")) - before,
                       key=lambda path: path.stat().st_mtime)
        record = {}
        if (test_dir / "metrics.jsonl").is_file():
            record = json.loads((test_dir / "metrics.jsonl").read_text().splitlines()[-1])
        printed = json.loads((test_dir / "test_results.json").read_text())
        if set(scored_by({"record": record})) != pins:
            raise SystemExit(f"reproduce: {label} was scored by classifiers {sorted(scored_by({'record': record}))},"
                             f" not the table's {sorted(pins)}: its experiment YAML names other classifiers")
        toy = run_dir / "toy" / "metrics.jsonl"
        toy_last = json.loads(toy.read_text().splitlines()[-1]) if toy.is_file() else {}
        iterations = printed.get("iteration", 0)
        trained_in = torch.load(checkpoint, map_location="cpu", weights_only=True).get("genlab_training_precisions")
        fit = json.loads(timing.read_text())
        docs = self.docs
        docs.mkdir(parents=True, exist_ok=True)
        grids = sorted((run_dir / "samples").glob("iteration_*.png"))
        if grids:
            shutil.copyfile(grids[-1], docs / f"{row.name}-seed{seed}.png")
        for variant_grids in (run_dir / "samples").glob("*/"):  # a second sampler's grids (the EMA generator's)
            if last := sorted(variant_grids.glob("iteration_*.png"))[-1:]:
                shutil.copyfile(last[0], docs / f"{row.name}-seed{seed}-{variant_grids.name}.png")
        if row.filmstrip and len(grids) >= 5:
            write_filmstrip([grids[0], *(grids[round(k * (len(grids) - 1) / 4)] for k in range(1, 5))],
                            docs / f"{row.name}-seed{seed}-filmstrip.png")
        scores = {**printed, **record.get("scores", {}), **{k: v for k, v in toy_last.items() if k != "iteration"}}
        result = json.dumps({
            "experiment": row.name, "yaml": row.yaml, "overlays": list(row.overlays),
            "arguments": list(row.arguments),
            "fit_arguments": list(row.fit_arguments), "seed": seed, "iterations": iterations,
            "fit_seconds": fit["seconds"],
            "genlab_commit": "/".join(dict.fromkeys(fit.get("commits", []))) or source_version(),
            "scores": scores, "record": record, "evaluated": evaluate, "trained_in_precision": trained_in,
            "fit_history": fit_history(run_dir),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            **({"checkpoint_sha256": file_sha256(checkpoint)[:12]} if not row.needs else {}),
        }, indent=1)
        (docs / f"{row.name}-seed{seed}.json").write_text(result)
        result_file.write_text(result)


def fit_history(run_dir: Path) -> list[dict]:
    """The scores of every evaluation during the fit (iteration and scores), from the run's `metrics.jsonl`."""
    records = run_dir / "metrics.jsonl"
    if not records.is_file():
        return []
    lines = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    return [{"iteration": line["iteration"], "scores": line["scores"]} for line in lines if line.get("stage") == "fit"]


def add_fit_histories(runs: Path, docs: Path) -> None:
    """Records written before they carried their fit's score history get it from the run folder, when the folder
    is the record's own run (the same fit seconds)."""
    by_name = {row.name: row for row in ROWS}
    for path in sorted(docs.glob("*-seed*.json")):
        entry = json.loads(path.read_text())
        row = by_name.get(entry.get("experiment", ""))
        if row is None or "fit_history" in entry:
            continue
        run_dir = runs / "lightning_logs" / row.run_name(entry["seed"]) / "version_0"
        timing = run_dir / "reproduce_fit_seconds.json"
        if timing.is_file() and json.loads(timing.read_text())["seconds"] == entry["fit_seconds"]:
            entry["fit_history"] = fit_history(run_dir)
            path.write_text(json.dumps(entry, indent=1))


def write_filmstrip(grids: list[Path], output: Path) -> None:
    """Grids side by side, 10 px apart on white, at half size: training at a glance."""
    from PIL import Image

    images = [Image.open(path).convert("RGB") for path in grids]
    width, height = images[0].size
    strip = Image.new("RGB", (len(images) * (width + 10) - 10, height), (255, 255, 255))
    for index, image in enumerate(images):
        strip.paste(image, (index * (width + 10), 0))
    strip.resize((strip.width // 2, strip.height // 2), Image.Resampling.LANCZOS).save(output)


def _format(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def scored_by(entry: dict) -> tuple[str, ...]:
    """The evaluation classifiers (12-digit checkpoint hashes) a row's record was scored with."""
    settings = (entry.get("record") or {}).get("settings") or {}
    return tuple(sorted(suite["checkpoint_sha256"] for suite in settings.values()
                        if isinstance(suite, dict) and suite.get("checkpoint_sha256")))


def known_classifiers(docs: Path) -> dict[str, str]:
    """hash → "classifier_x (test acc 0.99)" for the classifier rows of this table."""
    known = {}
    for path in sorted(docs.glob("classifier_*-seed*.json")):
        entry = json.loads(path.read_text())
        if entry.get("checkpoint_sha256"):
            accuracy = entry["scores"].get("test/acc", 0)
            known[entry["checkpoint_sha256"]] = f"{entry['experiment']} (test acc {accuracy:.4f})"
    return known


def classifier_name(sha: str, known: dict[str, str]) -> str:
    """A classifier as the table names it: its row and test accuracy (or that it is none of the table's), its hash."""
    return f"{known.get(sha, 'a classifier not in this table')} {sha}"


def classifier_cell(found: list[dict], known: dict[str, str]) -> tuple[str, bool]:
    """The row's "scored by" cell, and whether its seeds may be summarised together (one set of classifiers)."""
    sets = {scored_by(entry) for entry in found}
    if sets == {()}:
        return "", True
    if len(sets) > 1:
        return "seeds scored by different classifiers: not summarised", False
    return "; ".join(classifier_name(sha, known) for sha in next(iter(sets))), True


@dataclass(frozen=True)
class Comparison:
    """A sentence the table writes from the records: `row`'s `scores` against `baseline`'s `against` (the same
    names unless given: the raw generator's scores against its average's come from one row)."""

    row: str
    baseline: str
    scores: tuple[str, ...]
    what: str  # what differs between the two sides, in words
    against: tuple[str, ...] = ()

    @property
    def baseline_scores(self) -> tuple[str, ...]:
        return self.against or self.scores


RAW_SCORES = ("classifier/fd", "classifier/is", "classifier/precision", "classifier/recall")
COMPARISONS = (
    *(Comparison(f"dcgan_fashion_{size}_diffaugment", f"dcgan_fashion_{size}", SMALL_DATA_SCORES[:3],
                 "DiffAugment against none") for size in ("1k", "5k")),
    Comparison("vae_mnist_bf16", "vae_mnist", (*REFERENCE_IS, "test/loss/recon"), "bf16-mixed against fp32"),
    Comparison("dcgan_mnist_ema", "dcgan_mnist", ("reference/is", *RAW_SCORES),
               "bf16-mixed against fp32, the raw generator"),
    Comparison("gan_mnist_beta2_0999_bf16", "gan_mnist_beta2_0999_ema", REFERENCE_IS,
               "bf16-mixed against fp32, the raw generator"),
    *(Comparison(row, row, tuple(f"{score}@ema" for score in RAW_SCORES), "the generator's average against the raw"
                 " generator, in the same runs", against=RAW_SCORES)
      for row in ("dcgan_mnist_ema", "gan_mnist_beta2_0999_ema")),
)


def _spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def verdict(a: list[float], b: list[float]) -> str:
    """`a` against `b` by their means ± sample std: "not distinguishable" where the intervals overlap, else which
    side is higher."""
    (a_mean, a_std), (b_mean, b_std) = _spread(a), _spread(b)
    if abs(a_mean - b_mean) <= a_std + b_std:
        return "not distinguishable"
    return "higher" if a_mean > b_mean else "lower"


def records_of(docs: Path, row: str) -> list[dict]:
    """The records of `row`'s seeds in `docs`, in seed order (another row whose name `row` begins is left out)."""
    found = [json.loads(path.read_text()) for path in sorted(docs.glob(f"{row}-seed*.json"))]
    return [entry for entry in found if entry["experiment"] == row]


def compare(comparison: Comparison, docs: Path) -> str:
    """One sentence: n, mean ± std on each side, and "not distinguishable" where the mean ± std intervals overlap;
    refused when the two sides were scored by different classifiers."""
    sides = [records_of(docs, name) for name in (comparison.row, comparison.baseline)]
    head = (f"**{comparison.row}: {comparison.what}**" if comparison.row == comparison.baseline
            else f"**{comparison.row} against {comparison.baseline}** ({comparison.what})")
    if not all(sides):
        return f"{head}: not compared, a side has not run yet."
    if min(len(side) for side in sides) < 2:
        return f"{head}: not compared, a side has one training seed (a spread needs at least two)."
    classifiers = {scored_by(entry) for side in sides for entry in side}
    if len(classifiers) > 1:
        return f"{head}: not compared, the records were scored by different classifiers ({len(classifiers)} sets)."
    parts = []
    for name, baseline_name in zip(comparison.scores, comparison.baseline_scores):
        values = [[entry["scores"][score] for entry in side if entry["scores"].get(score) is not None]
                  for side, score in zip(sides, (name, baseline_name))]
        if not all(values):
            continue
        (a, a_std), (b, b_std) = (_spread(side) for side in values)
        shown = name if name == baseline_name else f"{name} against {baseline_name}:"
        parts.append(f"{shown} {a:.4g} ± {a_std:.2g} against {b:.4g} ± {b_std:.2g} ({verdict(*values)})")
    counts = f"n = {len(sides[0])} and {len(sides[1])} training seeds, one set of classifiers"
    return f"{head} ({counts}; mean ± sample std; overlapping spreads are not distinguishable): {'; '.join(parts)}."


def observation(row: Row, docs: Path) -> str:
    """What a person saw in the row's seed-0 grid, if that is the grid in `docs`; a newer run's grid is not yet
    described (its predecessor's description stays in git history)."""
    grid = docs / f"{row.name}-seed0.png"
    if grid.is_file() and file_sha256(grid)[:12] == row.observed_grid:
        return row.observed
    return "not yet looked at: the seed-0 grid is a newer run's than the description written for this row."


def classifier_coverage(docs: Path, known: dict[str, str]) -> str:
    """How many scored rows this table's own classifiers scored, and which rows older classifiers did."""
    scored: dict[str, bool] = {}
    for row in ROWS:
        sets = {scored_by(entry) for entry in records_of(docs, row.name)} - {()}
        if sets:
            scored[row.name] = all(sha in known for classifiers in sets for sha in classifiers)
    older = [name for name, own in scored.items() if not own]
    return (f"{len(scored) - len(older)} of the {len(scored)} scored rows are scored by this table's classifiers"
            + (f"; {', '.join(older)} still by older ones (runs not yet regenerated: their numbers are not comparable"
               " with the other rows')." if older else "."))


def history_table(row: Row, docs: Path) -> list[str]:
    """The row's `history` scores at every evaluation of each seed's fit, when its records carry them."""
    found = [entry for entry in records_of(docs, row.name) if entry.get("fit_history")]
    if not row.history or not found:
        return []
    iterations = sorted({point["iteration"] for entry in found for point in entry["fit_history"]})
    lines = ["", (f"**{row.name} during training** (each evaluation of the fit, as the run's `metrics.jsonl`"
                  " holds it; the last column is the final checkpoint's `genlab test`):"), "",
             "| seed | score | " + " | ".join(f"iteration {i}" for i in iterations) + " | test |",
             "|---|---|" + "---|" * (len(iterations) + 1)]
    for entry in found:
        at = {point["iteration"]: point["scores"] for point in entry["fit_history"]}
        for name in row.history:
            cells = [f"{at[i][name]:.4g}" if name in at.get(i, {}) else "" for i in iterations]
            final = entry["scores"].get(name)
            lines.append(f"| {entry['seed']} | {name} | " + " | ".join(cells)
                         + f" | {'' if final is None else f'{final:.4g}'} |")
    return lines


def real_data_values(docs: Path, known: dict[str, str]) -> list[str]:
    """Each classifier set's scores of real images (another split scored as if generated), from the records: the
    ceiling of an IS, the floor of a distance."""
    groups: dict[tuple, tuple[dict, list[str]]] = {}
    for path in sorted(docs.glob("*-seed*.json")):
        entry = json.loads(path.read_text())
        real = (entry.get("record") or {}).get("real_values") or {}
        if real.get("scores") and scored_by(entry):
            key = (scored_by(entry), real["split"], real["count"], entry["record"].get("real_split"))
            rows = groups.setdefault(key, (real["scores"], []))[1]
            rows += [] if entry["experiment"] in rows else [entry["experiment"]]
    lines = ["", "## Real-data values, from the records", "",
             ("Real images of one split scored as if generated, against the split the rows are scored against:"
              " what a generator that drew the data itself would get."), ""]
    for (classifiers, split, count, reference), (scores, rows) in groups.items():
        shown = "; ".join(f"{name} {value:.4g}" for name, value in scores.items()
                          if name.split("/")[-1] in ("is", "fd", "label_tv", "precision", "recall"))
        names = ", ".join(classifier_name(sha, known) for sha in classifiers)
        lines.append(f"- scored by {names}: {count:,} {split} images against the {reference} split"
                     f" (rows {', '.join(rows)}): {shown}")
    return lines if groups else []


NOTEBOOK_LOOP_VAE = "notebook-loop-vae.json"  # benchmarks/reference_loop.py score --record
NOTEBOOK_LOOP_DCGAN = "notebook-loop-dcgan.json"  # benchmarks/reference_loop.py dcgan --record


def provenance(record: dict) -> str:
    """What a benchmark record rests on, as a sentence: its command, date, commit, CPU, what and protocol."""
    return (f"`{record['command']}` ({record['date']}, commit {record['genlab_commit']}, CPU capability"
            f" {record['cpu_capability']}): {record['what']}; {record['protocol']}.")


def _span(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def notebook_loop_vae(docs: Path, known: dict[str, str]) -> list[str]:
    """The notebook's VAE loop and genlab's VAE under every classifier (the record of `reference_loop.py score`),
    and what the table says, each figure computed here: why a VAE's IS is a statement about its classifier too."""
    path = docs / NOTEBOOK_LOOP_VAE
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    networks, columns = record["networks"], record["classifiers"]
    value = {(cell["samples"], cell["vae"], cell["classifier"]): cell["is"] for cell in record["cells"]}
    counts = sorted({cell["samples"] for cell in record["cells"]})

    def label(name: str) -> str:  # genlab's classifiers by their table name and hash, every other network as named
        sha = networks[name]["sha256"]
        genlab_classifier = name in columns and not name.startswith("loop")
        return classifier_name(sha, known) if genlab_classifier else name

    lines = ["", "## The notebook's VAE loop under every classifier, from its record", "",
             (f"{provenance(record)} Rows: the VAE (the notebook's cells as a plain loop, three training seeds, and"
              f" genlab's); columns: the classifier. The record: `docs/results/{NOTEBOOK_LOOP_VAE}`."), "",
             "| samples | VAE | " + " | ".join(label(column) for column in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for count in counts:
        for vae in record["vaes"]:
            lines.append(f"| {count:,} | {label(vae)} | "
                         + " | ".join(f"{value[count, vae, column]:.3f}" for column in columns) + " |")
    facts = notebook_loop_vae_facts(record, value, label)
    return lines + ["", "What the table says (computed from the record): " + "; ".join(facts) + "."]


def notebook_loop_vae_facts(record: dict, value: dict, label: Callable[[str], str]) -> list[str]:
    """The spreads the cross table shows: by classifier kind, classifier seed, VAE seed, sample count; where genlab's
    VAE falls among the loop's; how often the loop's VAEs reach the notebook's bar of 9.0."""
    columns, networks = record["classifiers"], record["networks"]
    counts = sorted({cell["samples"] for cell in record["cells"]})
    loop_vaes = [vae for vae in record["vaes"] if vae.startswith("loop")]
    genlab_vaes = [vae for vae in record["vaes"] if not vae.startswith("loop")]
    loop_mlps = [column for column in columns if column.startswith("loop")]
    kinds = {column: "CNN" if "Conv" in networks[column]["kind"] else "MLP" if "MLP" in networks[column]["kind"]
             else networks[column]["kind"] for column in columns}
    first = counts[0]
    facts = []
    for kind in dict.fromkeys(kinds.values()):
        cells = [value[first, vae, column] for vae in record["vaes"] for column in columns if kinds[column] == kind]
        facts.append(f"at {first:,} samples the {kind} classifiers give {_span(cells)}")
    if len(loop_mlps) > 1:
        by_vae = {vae: max(value[first, vae, c] for c in loop_mlps) - min(value[first, vae, c] for c in loop_mlps)
                 for vae in record["vaes"]}
        widest = max(by_vae, key=by_vae.get)
        facts.append(f"at {first:,} samples the classifier's training seed alone (the loop MLP columns) moves one"
                     f" VAE's score by up to {by_vae[widest]:.3f} ({label(widest)})")
    if len(loop_vaes) > 1:
        moves = [max(value[first, vae, c] for vae in loop_vaes) - min(value[first, vae, c] for vae in loop_vaes)
                 for c in columns]
        facts.append(f"the VAE's training seed (the loop VAE rows) moves it by up to {max(moves):.3f} in one column")
    if len(counts) > 1:
        gap = max(abs(value[counts[0], vae, c] - value[counts[-1], vae, c]) for vae in record["vaes"] for c in columns)
        facts.append(f"the sample count ({counts[0]:,} against {counts[-1]:,}) moves a cell by at most {gap:.3f}")
    for vae in genlab_vaes if len(loop_vaes) > 1 else ():
        spans = [(min(value[first, v, c] for v in loop_vaes), max(value[first, v, c] for v in loop_vaes),
                  value[first, vae, c]) for c in columns]
        inside = sum(low <= own <= high for low, high, own in spans)
        above = sum(own > high for low, high, own in spans)
        facts.append(f"at {first:,} samples {label(vae)} lies within the loop VAEs' range in {inside} of"
                     f" {len(columns)} columns (above it in {above})")
    for column in loop_mlps:
        cells = [value[count, vae, column] for count in counts for vae in loop_vaes]
        facts.append(f"under {column} {sum(cell >= 9.0 for cell in cells)} of the loop VAEs' {len(cells)} cells"
                     " reach 9.0")
    return facts


def notebook_loop_dcgan(docs: Path, known: dict[str, str]) -> list[str]:
    """The notebook's DCGAN loop scored as cell [28] (the records of `reference_loop.py dcgan`, one file per
    command), set beside dcgan_mnist's `genlab test` scores only by the same classifier on the same protocol (one
    split, +1e-10) after as many iterations."""
    paths = sorted(docs.glob(NOTEBOOK_LOOP_DCGAN.replace(".json", "*.json")))
    records = [json.loads(path.read_text()) for path in paths]
    if not records:
        return []
    genlab = records_of(docs, "dcgan_mnist")
    lines = ["", "## The notebook's DCGAN loop, from its records", ""]
    for record in records:
        lines += [provenance(record), ""]
    runs = sorted((run for record in records for run in record["runs"]), key=lambda run: run["seed"])
    for sha in dict.fromkeys(score["sha256"] for run in runs for score in run["scores"]):
        scored = [(run, score) for run in runs for score in run["scores"] if score["sha256"] == sha]
        for iterations in sorted({run["iterations"] for run, _ in scored}):
            values = [score["is"] for run, score in scored if run["iterations"] == iterations]
            seeds = ", ".join(str(run["seed"]) for run, _ in scored if run["iterations"] == iterations)
            beside = beside_dcgan_mnist(sha, iterations, values, genlab)
            lines.append(f"- the loop after {iterations:,} iterations, under {classifier_name(sha, known)}:"
                         f" IS {_format(values)} (seeds {seeds}); {beside}.")
    return lines


def beside_dcgan_mnist(sha: str, iterations: int, loop: list[float], genlab: list[dict]) -> str:
    """dcgan_mnist's scores by classifier `sha` on the loop's protocol after as many iterations, set against the
    loop's values (n, mean ± std, "not distinguishable" where the spreads overlap), or why there are none."""
    same = [entry for entry in genlab if entry["iterations"] == iterations]
    if not same:
        return f"dcgan_mnist trained another number of iterations ({genlab[0]['iterations']:,})" if genlab else \
            "dcgan_mnist has no record"
    values, suites = [], set()
    for entry in same:
        settings = (entry.get("record") or {}).get("settings") or {}
        for name, suite in settings.items():
            if (isinstance(suite, dict) and suite.get("checkpoint_sha256") == sha
                    and suite.get("splits") == 1 and suite.get("epsilon") == 1e-10
                    and entry["scores"].get(f"{name}/is") is not None):
                values.append(entry["scores"][f"{name}/is"])
                suites.add(name)
    if len(suites) != 1:
        return "no dcgan_mnist score by this classifier over one split with +1e-10 to set beside it"
    shown = (f"dcgan_mnist's `{suites.pop()}/is` by the same classifier on the same protocol: {_format(values)}"
             f" over {len(values)} training seed{'s' if len(values) > 1 else ''}, range {_span(values)}")
    if min(len(loop), len(values)) < 2:
        return f"{shown} (a spread on each side is needed to compare)"
    said = verdict(loop, values)
    return f"{shown}: {said if said == 'not distinguishable' else 'the loop ' + said}"


def write_table(output: Path, docs: Path, inception: bool) -> None:
    """The table from the records in `docs` (committed with it), so a row run on another day or machine stays."""
    lines = [
        "# Results",
        "",
        "Every row regenerates with `python benchmarks/reproduce.py` (resumable; `--experiments NAME` for one row).",
        "Scores come from `genlab test` on the final checkpoint, against the test split; each is a number plus the",
        "protocol in its `metrics.jsonl` record (the full records: `docs/results/*.json`). Mean ± sample std",
        "over training seeds where there are several. `reference/…` is the reference notebooks' own IS protocol",
        "(their MLP classifier, one split over 10,000 samples, +1e-10), `classifier/…` genlab's CNN (10 splits),",
        "`…@mixture` / `…@running` the same weights under the other sampler. it/s counts training iterations",
        "(batches) over the fit's wall time, evaluations included. Where genlab's number differs from the",
        "reference's, `docs/reproduction.md` says why, with the measurements.",
        "",
        ("| experiment | reference | reference protocol | genlab | scored by | seeds | iterations | trained in"
        " | wall time | it/s | grid |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    known = known_classifiers(docs)
    for row in ROWS:
        found = records_of(docs, row.name)
        if not found:
            lines.append(f"| {row.name} | {row.reference} | {row.protocol} | not run yet | | | | | | | |")
            continue
        scored, summarised = classifier_cell(found, known)
        shown = []
        for name in row.headline if summarised else ():
            values = [entry["scores"][name] for entry in found if entry["scores"].get(name) is not None]
            if values:
                shown.append(f"{name} {_format(values)}")
            elif name.startswith("inception/") and not inception:
                shown.append(f"{name}: weights not available")
        iterations = found[0]["iterations"]
        # records made before genlab chose precisions automatically were all trained in fp32
        precisions = sorted({"+".join(entry.get("trained_in_precision") or ["32-true"]) for entry in found})
        minutes = statistics.mean(entry["fit_seconds"] for entry in found) / 60
        rate = statistics.mean(entry["iterations"] / entry["fit_seconds"] for entry in found if entry["fit_seconds"])
        pictures = [docs / f"{row.name}-seed{found[0]['seed']}{suffix}.png" for suffix in ("", "-ema")]  # raw, average
        grid = " ".join(f"![]({os.path.relpath(picture, output.parent)})" for picture in pictures if picture.is_file())
        lines.append(f"| {row.name} | {row.reference} | {row.protocol} | {'; '.join(shown)} | {scored} |"
                     f" {', '.join(str(entry['seed']) for entry in found)} | {iterations} | {', '.join(precisions)} |"
                     f" {minutes:.1f} min |"
                     f" {rate:.1f} | {grid} |")
    lines += ["", classifier_coverage(docs, known)]
    for row in ROWS:
        strips = sorted(docs.glob(f"{row.name}-seed*-filmstrip.png"))
        if row.observed and any(docs.glob(f"{row.name}-seed*.json")):  # rows run, with what a person saw
            lines += ["", f"**{row.name}, the grids looked at.** {observation(row, docs)}"]
            lines += [f"![]({os.path.relpath(strip, output.parent)})" for strip in strips]
    for row in ROWS:
        lines += history_table(row, docs)
    lines += real_data_values(docs, known)
    lines += notebook_loop_vae(docs, known) + notebook_loop_dcgan(docs, known)
    lines += ["", "## Comparisons, written from the records", ""]
    lines += [compare(comparison, docs) + "\n" for comparison in COMPARISONS]
    entries = [json.loads(path.read_text()) for path in docs.glob("*.json")]
    capability = sorted({entry.get("cpu_capability") or "?" for entry in entries})
    commits = sorted({entry.get("genlab_commit") or "?" for entry in entries})
    lines += ["", (f"Measured on CPUs with capability {', '.join(capability)}"
                   " (torch.backends.cpu.get_cpu_capability()),"
              f" genlab commit {', '.join(commits)}."), ""]
    partial = output.with_suffix(".md.partial")
    partial.write_text("\n".join(lines))
    partial.replace(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments",
                        help="comma-separated experiment names, run in this order (default: every row)")
    parser.add_argument("--runs", default="reproduction", help="folder for runs and results (default: reproduction/)")
    parser.add_argument("--output", default=str(REPO / "RESULTS.md"))
    parser.add_argument("--docs", default=str(REPO / "docs" / "results"), help="where final grids and records go")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the table from finished results")
    parser.add_argument("--precision", help="training precision of every generative model, e.g. 32-true or bf16-mixed"
                        " (default: each row's own, 32-true where a row names none; classifiers always 32-true)")
    parser.add_argument("--set", action="append", default=[], metavar="ARG",
                        help="an extra genlab argument for every run"
                             " (e.g. --set=--trainer.max_epochs=1 for a smoke run)")
    args = parser.parse_args()
    runs, docs, output = Path(args.runs).resolve(), Path(args.docs).resolve(), Path(args.output).resolve()
    inception = official_inception_weights()
    if runs.is_dir():
        add_fit_histories(runs, docs)
    if not args.table_only:
        reproduction = Reproduction(runs, docs, args.set, args.precision)
        by_name = {row.name: row for row in ROWS}
        wanted = args.experiments.split(",") if args.experiments else list(by_name)
        unknown = set(wanted) - set(by_name)
        if unknown:
            raise SystemExit(f"reproduce: unknown experiments {sorted(unknown)}; known: {list(by_name)}")
        order: list[str] = []  # as asked, each after the classifiers it is scored with
        for name in wanted:
            order += [need for need in by_name[name].needs if need not in order] + ([name] if name not in order else [])
        for name in order:
            row = by_name[name]
            for seed in row.seeds:
                reproduction.run(row, seed, evaluate=inception or not row.name.endswith("emoji"))
            write_table(output, docs, inception)
    write_table(output, docs, inception)
    print(f"reproduce: wrote {output}")


if __name__ == "__main__":
    main()
