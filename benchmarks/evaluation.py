"""Evaluation: what the classifier scores mean on real data, and what scoring costs.

Prints, for the MNIST evaluation classifier (a folder such as lightning_logs/classifier_mnist, or a .ckpt):
  1. its accuracy on the MNIST test split;
  2. the classifier IS (10 splits), m-IS and Fréchet distance of the real test set (10,000 images) against the
     val split, computed exactly as `GenerativeMetrics` scores a generator: the ceiling a generator is measured
     against;
  3. the seconds `GenerativeMetrics` spends on classifier IS + FD of 10,000 generated samples (generation,
     classifier passes, compute), for a generator checkpoint (`--generator-ckpt`, built from `--config`) or a
     randomly initialised DCGAN generator;
  4. the seconds for Inception FID (with IS and KID from the same pass, as dcgan_emoji.yaml asks) of 3,000
     generated emoji against the training emoji, with a random-weights Inception file (the timing does not
     depend on the weights; the scores then mean nothing). Inception-v3 is slow on a CPU, so
     `--inception-images N` feeds N images per side and extrapolates to the full run.

    python benchmarks/evaluation.py --classifier lightning_logs/classifier_mnist
    python benchmarks/evaluation.py --generator-ckpt lightning_logs/dcgan_mnist/version_0/checkpoints/last.ckpt \
        --config experiments/dcgan_mnist.yaml --inception-images 300
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor

from genlab.cli import GenlabCLI
from genlab.data import EmojiDataModule, MNISTDataModule
from genlab.errors import GenlabError
from genlab.evaluation import Evaluation, generated_batches
from genlab.metrics import ClassifierMetrics, EvaluationPlan, InceptionMetrics, random_inception_weights
from genlab.metrics.classifier_checkpoint import load_classifier
from genlab.metrics.inception import INCEPTION_CLASSES
from genlab.metrics.scores import FrechetDistance, InceptionScore, KernelDistance
from genlab.models.base import GenerativeModule

sys.path.insert(0, str(Path(__file__).resolve().parent))  # throughput.py, beside this file
from throughput import quiet

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
BATCH = 500  # GenerativeMetrics' default batch of generated images
FULL_CLASSIFIER = 10_000  # GenerativeMetrics num_samples in the MNIST YAMLs
FULL_INCEPTION = 3000  # dcgan_emoji.yaml: num_samples 3000, real_split train
# dcgan_emoji.yaml's InceptionMetrics settings (besides the weights)
EMOJI_SUITE = {"is_splits": 2, "fid_features": 2048, "kid_subsets": 100, "kid_subset_size": 1000}


@contextmanager
def timed(clock: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        clock[key] = clock.get(key, 0.0) + time.perf_counter() - start


def batches(images: Tensor, size: int = BATCH) -> Iterator[Tensor]:
    yield from images.split(size)


def build_generator(config: Path, checkpoint: Path | None) -> tuple[GenerativeModule, LightningDataModule]:
    """The config's model as `genlab fit` builds it (seeded, so the random init is reproducible), with the
    checkpoint's weights if given (`GAN.load_from_checkpoint` cannot: the networks are not hyperparameters)."""
    if not config.is_file():
        raise GenlabError(f"config {config} does not exist: pass --config experiments/<name>.yaml")
    cli = GenlabCLI(args=["--config", os.fspath(config), "--evaluate=false", "--trainer.logger=false"], run=False)
    model = cli.model
    if not isinstance(model, GenerativeModule):
        raise GenlabError(f"{config} trains a {type(model).__name__}, which cannot sample: pass a generator's config")
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise GenlabError(f"generator checkpoint {checkpoint} does not exist: check --generator-ckpt")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state["state_dict"])
        except (KeyError, RuntimeError) as error:
            reason = str(error).splitlines()[0][:160]
            raise GenlabError(f"{checkpoint} does not fit {config.name} ({reason}): pass the config it was trained"
                              " with (config.yaml in its run folder)") from None
    return model.eval(), cli.datamodule


# --------------------------------------------------------------------------- 1 and 2: the classifier on real data
def test_accuracy(network: torch.nn.Module, images: Tensor, labels: Tensor) -> float:
    correct = sum(int((network(x).argmax(1) == y).sum()) for x, y in zip(batches(images), batches(labels)))
    return correct / len(labels)


def classifier_suite(checkpoint: str, num_fake: int, num_real: int) -> ClassifierMetrics:
    suite = ClassifierMetrics(checkpoint=checkpoint, splits=10)
    suite.prepare(EvaluationPlan(data_shape=(1, 28, 28), data_name="MNISTDataModule", data_classes=10,
                                 model_classes=0, num_fake=num_fake, num_real=num_real, real_split="val"))
    return suite


def show_scores(scores: dict[str, float]) -> str:
    return (f"IS {scores['classifier/is']:.3f} ± {scores['classifier/is_std']:.3f}, "
            f"m-IS {scores['classifier/m_is']:.3f} ± {scores['classifier/m_is_std']:.3f}, "
            f"FD {scores['classifier/fd']:.4f}, label TV {scores['classifier/label_tv']:.4f}")


# --------------------------------------------------------------------------- 4: Inception
def compute_seconds(frechet: FrechetDistance, kernel: KernelDistance, score: InceptionScore) -> dict[str, float]:
    """Seconds of each score's compute step (FID: eigenvalues of a 2048² product; KID: 100 subset MMDs)."""
    clock: dict[str, float] = {}
    for name, metric in (("FID", frechet), ("KID", kernel), ("IS", score)):
        with timed(clock, name):
            metric.compute()
    return clock


def random_metrics(num_fake: int, num_real: int) -> tuple[FrechetDistance, KernelDistance, InceptionScore]:
    """The suite's metrics at full size, fed random features: their compute cost does not depend on the values."""
    generator = torch.Generator().manual_seed(0)
    features = EMOJI_SUITE["fid_features"]
    frechet = FrechetDistance(features)
    kernel = KernelDistance(features, EMOJI_SUITE["kid_subsets"], EMOJI_SUITE["kid_subset_size"])
    score = InceptionScore(INCEPTION_CLASSES, EMOJI_SUITE["is_splits"])
    for count, real in ((num_fake, False), (num_real, True)):
        block = torch.rand(count, features, generator=generator)
        frechet.update(block, real)
        kernel.update(block, real)
    score.update(torch.rand(num_fake, INCEPTION_CLASSES, generator=generator, dtype=torch.float64).softmax(1))
    return frechet, kernel, score


def inception_timing(config: Path, images: int, weights_dir: Path) -> None:
    """Times dcgan_emoji's end-of-run evaluation: 3,000 generated emoji and the training emoji through
    Inception-v3 (only `images` per side when fewer, then extrapolated), and each score's compute."""
    clock: dict[str, float] = {}
    model, data = build_generator(config, None)
    if not isinstance(data, EmojiDataModule):
        raise GenlabError(f"{config} does not train on EmojiDataModule:"
                          " pass --emoji-config experiments/dcgan_emoji.yaml")
    data.setup()
    real = data.splits.train.samples
    num_real = min(FULL_INCEPTION, len(real))
    images = min(images, FULL_INCEPTION)
    with timed(clock, "weights"):
        weights = random_inception_weights(weights_dir / "inception-random.pth")
        suite = InceptionMetrics(weights_path=os.fspath(weights), download=False, allow_unofficial_weights=True,
                                 **EMOJI_SUITE)
        suite.prepare(EvaluationPlan(data_shape=tuple(data.data_shape), data_name="EmojiDataModule", data_classes=0,
                                     model_classes=0, num_fake=FULL_INCEPTION, num_real=num_real, real_split="train"))
    with torch.no_grad():
        with timed(clock, "generate"):  # all of them: cheap next to Inception, and batch-size effects stay out
            fakes = torch.cat([batch for batch, _ in generated_batches(model, FULL_INCEPTION, BATCH, seed=0)])
        fed_real, fed_fake = real[: min(images, num_real)], fakes[:images]
        with timed(clock, "inception"):
            for batch in batches(fed_real):
                suite.update(batch, real=True)
            for batch in batches(fed_fake):
                suite.update(batch, real=False)
    full = len(fed_fake) == FULL_INCEPTION and len(fed_real) == num_real
    computes = compute_seconds(*(suite.frechet, suite.kernel, suite.inception_score) if full
                               else random_metrics(FULL_INCEPTION, num_real))
    per_second = (len(fed_real) + len(fed_fake)) / clock["inception"]
    inception = (FULL_INCEPTION + num_real) / per_second
    fid = clock["generate"] + inception + computes["FID"]
    everything = fid + computes["KID"] + computes["IS"]
    how = "measured" if full else f"extrapolated from {len(fed_fake)} + {len(fed_real)} images"
    print(f"  Inception-v3 (random weights) written and loaded in {clock['weights']:.1f} s")
    print(f"  Inception forward: {per_second:.2f} images/s ({1 / per_second:.2f} s per image)")
    every = " (all of them)" if num_real == len(real) else ""
    print(f"  {FULL_INCEPTION} generated vs {num_real} training emoji{every}, {how}:")
    print(f"    generation {clock['generate']:.1f} s + Inception {inception:.0f} s"
          f" + compute FID {computes['FID']:.1f} s"
          f" = FID in {fid:.0f} s ({fid / 60:.1f} min)")
    print(f"    with KID ({computes['KID']:.1f} s) and IS ({computes['IS']:.2f} s) as dcgan_emoji.yaml asks:"
          f" {everything:.0f} s ({everything / 60:.1f} min)" + ("" if full else "; compute timed at full size on"
                                                                 " random features"))

# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", default="lightning_logs/classifier_mnist",
                        help="classifier checkpoint or run/experiment folder (default: %(default)s)")
    parser.add_argument("--data-dir", default=os.environ.get("GENLAB_DATA_DIR"),
                        help="data root holding MNIST/raw and EmojiOne/png/32 (default: $GENLAB_DATA_DIR, else data)")
    parser.add_argument("--generator-ckpt", type=Path, help="a generator checkpoint to time (default: random init)")
    parser.add_argument("--config", type=Path, default=EXPERIMENTS / "dcgan_mnist.yaml",
                        help="the generator's config (default: experiments/dcgan_mnist.yaml)")
    parser.add_argument("--samples", type=int, default=FULL_CLASSIFIER,
                        help="generated samples for (3) (default %(default)s; at least 129)")
    parser.add_argument("--inception-images", type=int, default=FULL_INCEPTION,
                        help="images per side for (4); fewer than %(default)s extrapolates (0 skips (4))")
    parser.add_argument("--emoji-config", type=Path, default=EXPERIMENTS / "dcgan_emoji.yaml",
                        help="the emoji DCGAN whose random generator (4) uses (default: experiments/dcgan_emoji.yaml)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    args = parser.parse_args(argv)
    if args.samples < 129:
        parser.error("--samples must be at least 129 (10 IS splits of 10 classes; FD on 128 features)")
    if args.inception_images < 0:
        parser.error("--inception-images must be 0 (skip) or more")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    if args.data_dir:
        os.environ["GENLAB_DATA_DIR"] = args.data_dir
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()

    loaded = load_classifier(args.classifier)
    data = MNISTDataModule()
    data.setup()
    test, val = data.splits.test, data.splits.val
    recorded = f", val accuracy {loaded.accuracy:.4f} when saved" if loaded.accuracy is not None else ""
    print(f"classifier: {loaded.path} (sha256 {loaded.sha256}, {type(loaded.network).__name__},"
          f" trained on {loaded.data}{recorded}); {torch.get_num_threads()} threads")

    with torch.no_grad():
        print(f"\n(1) test accuracy on the MNIST test split ({len(test.labels)} images):"
              f" {test_accuracy(loaded.network, test.samples, test.labels):.4f}")

        clock: dict[str, float] = {}
        suite = classifier_suite(args.classifier, len(test.labels), len(val.labels))
        for batch in batches(val.samples):
            suite.update(batch, real=True)
        for batch in batches(test.samples):
            suite.update(batch, real=False)
        print(f"\n(2) real MNIST test set ({len(test.labels)}) vs val split ({len(val.labels)}), the ceiling:\n"
              f"  {show_scores(suite.compute().scores)}")

        what = f"{args.generator_ckpt} ({args.config.name})" if args.generator_ckpt else f"random {args.config.name}"
        model, _ = build_generator(args.config, args.generator_ckpt)
        # the evaluation GenerativeMetrics runs, in its parts: real side once, then generation, passes, compute
        evaluation = Evaluation([ClassifierMetrics(checkpoint=args.classifier, splits=10)], num_samples=args.samples,
                                num_real=len(val.labels), batch_size=BATCH, real_values=False)
        evaluation.prepare(data, model, "val")
        with timed(clock, "real"):
            evaluation.feed_real(data, model, "val")
        with timed(clock, "generate"):
            fakes = torch.cat([images for images, _ in generated_batches(model, args.samples, BATCH, seed=0)])
        with timed(clock, "classify"):
            evaluation.feed(fakes, None, real=False, device=model.device)
        with timed(clock, "compute"):
            scores, _ = evaluation.compute()
    total = clock["generate"] + clock["classify"] + clock["compute"]
    print(f"\n(3) classifier IS + FD of {args.samples} samples from the {what} generator:\n"
          f"  {total:.2f} s = generation {clock['generate']:.2f} s + classifier passes {clock['classify']:.2f} s"
          f" + compute {clock['compute']:.3f} s (plus the val split's real side, read once per run:"
          f" {clock['real']:.2f} s)")
    if args.samples != FULL_CLASSIFIER:
        scale = FULL_CLASSIFIER / args.samples
        print(f"  for {FULL_CLASSIFIER} samples, extrapolated:"
              f" {(clock['generate'] + clock['classify']) * scale + clock['compute']:.1f} s")
    print(f"  scores: {show_scores(scores)}")

    if args.inception_images:
        print(f"\n(4) Inception metrics of dcgan_emoji ({args.emoji_config.name}'s random generator):")
        with tempfile.TemporaryDirectory() as weights_dir:
            inception_timing(args.emoji_config, args.inception_images, Path(weights_dir))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    try:
        main()
    except GenlabError as error:
        print(f"evaluation: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
