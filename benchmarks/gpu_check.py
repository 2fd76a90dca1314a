"""One command for anyone with a GPU: what genlab does on this device, every figure measured in this run.

    python benchmarks/gpu_check.py                         # the default models, data from $GENLAB_DATA_DIR
    python benchmarks/gpu_check.py --models dcgan_mnist,vae_mnist --data-dir /path/to/datasets --seconds 20
    python benchmarks/gpu_check.py --tiny                  # CI: tiny data and networks, < 1 min on a CPU

Prints the device (GPU name, compute capability and count, or the CPU), the torch and Lightning versions and the
CPU capability; then per model: the precision, memory layout and TF32 setting genlab's automatic choice picks on
this device and why (`genlab.precision.choose_fast_path`, as `genlab fit` applies it); genlab's it/s on that path
and in fp32, each against the plain hand-written loop (`plain_steps.py`, fp32, networks and batches on the same
device), timed in alternating blocks inside one fit (`throughput.Interleaved`) so machine drift slows both alike;
host synchronisations per ordinary iteration and where any came from (`genlab.host_syncs.SyncsPerIteration`, on a
short fit that neither logs nor checkpoints); the peak device memory of that fit (on a CPU the process's peak RSS);
and the exact-resume check: K iterations straight against K/2, then `--ckpt_path last` for K/2 more, through the
real `genlab fit`, every tensor of the final `state_dict` compared bit for bit. A table ends the output.

Exit status 1 when a resume differs, an ordinary iteration synchronises or a model fails to run; 2 for bad
arguments or missing data; else 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # throughput.py and plain_steps.py, beside this file

import lightning as L
import numpy as np
import torch
from plain_steps import gan_plain_step, vae_plain_step
from throughput import IMAGE_CALLBACKS, Budget, Interleaved, quiet, reference_batches

from genlab.callbacks import RunReport
from genlab.cli import GenlabCLI
from genlab.cli import main as genlab_main
from genlab.host_syncs import SyncsPerIteration
from genlab.models import GAN
from genlab.precision import CHOICE_VARIABLE, FP32, FastPath
from genlab.runtime import answer_gpu_checks_once_without_gpus, cpu_has_native_bf16, iterations_done

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TINY_MNIST = ["--data.init_args.batch_size=16", "--data.init_args.val_size=16"]


@dataclass(frozen=True)
class Case:
    name: str
    warmup: int  # untimed iterations per side before the timed blocks
    tiny: tuple[str, ...]  # overrides shrinking the YAML's networks for --tiny (as far as the YAML allows)
    images: bool = True  # reads MNIST from the data root


CASES = {case.name: case for case in [
    Case("toy_quadratic", 100, ("--data.init_args.batch_size=32",), images=False),  # its points are drawn anyway
    Case("gan_mnist", 20, ("--model.init_args.generator.init_args.hidden=[32, 32]",
                           "--model.init_args.discriminator.init_args.hidden=[16]", *TINY_MNIST)),
    Case("dcgan_mnist", 5, tuple(TINY_MNIST)),  # the InfoGAN networks have fixed sizes: only the batch shrinks
    Case("vae_mnist", 20, ("--model.init_args.encoder.init_args.hidden=[32, 16]",
                           "--model.init_args.decoder.init_args.hidden=[16, 32]", *TINY_MNIST)),
    Case("wgan_gp_mnist", 10, ("--model.init_args.generator.init_args.hidden=[16, 32]",
                               "--model.init_args.discriminator.init_args.hidden=[32, 16]", *TINY_MNIST)),
]}


@dataclass
class Row:
    """One model's results; None where a step did not run (an error ended the model's checks)."""

    model: str
    path: FastPath | None = None
    syncs: int | None = None  # the most host synchronisations in one ordinary iteration
    where: Counter = field(default_factory=Counter)
    rates: tuple[float, float] | None = None  # (plain it/s, genlab it/s) on genlab's default path
    fp32_rates: tuple[float, float] | None = None  # the same with genlab in fp32
    fp32_layout: str | None = None  # the memory format genlab chose for its fp32 run
    memory: str = "?"
    resume: str | None = None  # "identical", or what differs
    error: str | None = None

    def failures(self) -> list[str]:
        """What failed: an error, a host sync in an ordinary iteration, a resume that is not identical."""
        return [what for what, failed in (("error", self.error), ("host syncs", self.syncs),
                                          ("resume", self.resume not in (None, "identical"))) if failed]


# --------------------------------------------------------------------------- the device
def training_device() -> torch.device:
    """Where Lightning's `accelerator: auto` trains: the first CUDA GPU if any, else the CPU."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def describe_device(device: torch.device) -> list[str]:
    capability = torch.backends.cpu.get_cpu_capability()
    lines = []
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        count = torch.cuda.device_count()
        lines.append(f"device: CUDA {torch.cuda.get_device_name(device)}, compute capability {major}.{minor},"
                     f" {count} GPU{'s' if count > 1 else ''} visible (one is used); CUDA {torch.version.cuda},"
                     f" cuDNN {torch.backends.cudnn.version()}")
    else:
        built = f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch build"
        lines.append(f"device: CPU, no CUDA GPU visible ({built})")
    lines.append(f"torch {torch.__version__}, lightning {L.__version__}; CPU capability {capability}"
                 f" (oneDNN native bf16: {'yes' if cpu_has_native_bf16() else 'no'}), {torch.get_num_threads()}"
                 " torch threads")
    return lines


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    """The device's peak allocated memory since the reset; on a CPU the process's peak RSS (never reset)."""
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return f"{peak / (2**20 if sys.platform == 'darwin' else 2**10):.0f} MiB RSS"


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Setup:
    """What every run of a model shares: its YAML, the data root and --tiny's overrides."""

    case: Case
    data_dir: Path | None
    tiny: bool

    def args(self, logs: Path, *extra: str) -> list[str]:
        """`genlab fit` arguments: the YAML without scoring, progress bar, summary or validation, on one device."""
        args = ["--config", os.fspath(EXPERIMENTS / f"{self.case.name}.yaml"), "--evaluate=false",
                "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                "--trainer.devices=1", f"--trainer.logger.init_args.save_dir={logs}",
                "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--trainer.max_epochs=-1"]
        if self.case.images:
            args.append(f"--data.init_args.data_dir={self.data_dir}")
        if self.tiny:
            args += self.case.tiny
        return [*args, *extra]


def build(args: list[str]) -> tuple[GenlabCLI, FastPath]:
    """The run `genlab fit` would train (not started), without checkpoints, image callbacks or the end-of-fit
    report (periodic or final work, not per iteration), and the fast path the CLI chose and applied to it."""
    os.environ.pop(CHOICE_VARIABLE, None)  # the CLI hands its choice on through it (for DDP): read it back
    cli = GenlabCLI(args=[*args, "--trainer.enable_checkpointing=false"], run=False)
    cli.trainer.callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, (*IMAGE_CALLBACKS, RunReport))]
    precision, layout, tf32, reason = os.environ[CHOICE_VARIABLE].split("|", 3)
    return cli, FastPath(precision, layout, reason, {"on": True, "off": False}.get(tf32))


class StopAfter(L.Callback):
    """Ends the fit after `iterations` training batches."""

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if iterations_done(trainer) >= self.iterations:
            trainer.should_stop = True


def count_syncs(setup: Setup, logs: Path, device: torch.device, row: Row) -> L.LightningModule:
    """Host synchronisations per iteration on a short fit that never logs (nor checkpoints) before its end, and
    the peak memory of that fit. Every iteration but the last, which ends the fit, is an ordinary one; the fit is
    long enough for two generator steps of a critic trained `n_critic` times per generator step."""
    cli, row.path = build(setup.args(logs, "--trainer.log_every_n_steps=1000000"))
    iterations = 2 * getattr(cli.model, "n_critic", 1) + 2
    counter = SyncsPerIteration()
    cli.trainer.callbacks.insert(0, counter)  # first: it stops counting before other callbacks run
    cli.trainer.callbacks.append(StopAfter(iterations))
    peak_memory_reset(device)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    row.memory = peak_memory(device)
    ordinary = [iteration for iteration in counter.counts if iteration < iterations]
    if len(ordinary) != iterations - 1:
        raise RuntimeError(f"the sync count saw iterations {sorted(counter.counts)}, expected 1..{iterations}")
    row.syncs = max(counter.counts[iteration] for iteration in ordinary)
    row.where = Counter(place for iteration in ordinary for place in counter.where[iteration])
    return cli.model


def plain_step(cli: GenlabCLI, device: torch.device) -> Callable[[], None]:
    """The hand-written loop on `device` (fp32, contiguous) from copies of the model's current networks."""
    gan = isinstance(cli.model, GAN)
    batches = reference_batches(cli.datamodule, cli.datamodule.batch_size, normalize=gan)
    builder = gan_plain_step if gan else vae_plain_step
    return builder(cli.model, batches, device, torch.contiguous_format)


def time_against_plain(cli: GenlabCLI, step: Callable[[], None], budget: Budget,
                       min_block: int) -> tuple[float, float]:
    """(plain it/s, genlab it/s), timed in alternating blocks inside one fit (`Interleaved`)."""
    timer = Interleaved(step, budget, min_block=min_block)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return timer.rates()


def time_both_paths(setup: Setup, logs: Path, device: torch.device, budget: Budget, row: Row) -> None:
    """genlab on its default path, then in fp32 (the same run if the default is fp32, contiguous), each against
    the plain loop; all three start from the same initial weights."""
    min_block = 3 if setup.tiny else 5
    cli, path = build(setup.args(logs))
    initial = {key: value.clone() for key, value in cli.model.state_dict().items()}
    step = plain_step(cli, device)
    row.rates = time_against_plain(cli, step, budget, min_block)
    if path.precision == FP32 and path.memory_format == "contiguous":
        row.fp32_rates, row.fp32_layout = row.rates, path.memory_format
        return
    del cli
    cli, path = build(setup.args(logs, f"--trainer.precision={FP32}"))
    cli.model.load_state_dict(initial)
    row.fp32_rates, row.fp32_layout = time_against_plain(cli, step, budget, min_block), path.memory_format


def optimizer_steps(model: torch.nn.Module, iterations: int) -> int:
    """`trainer.max_steps` for `iterations` training batches: a GAN steps its critic every iteration and its
    generator every `n_critic`-th (counted from 1); other models step once per iteration."""
    if isinstance(model, GAN):
        return iterations + iterations // model.n_critic
    return iterations


def check_resume(setup: Setup, folder: Path, iterations: int, deterministic: bool, model: torch.nn.Module) -> str:
    """K iterations straight, and K/2 then `--ckpt_path last` for K/2 more, through the real `genlab fit`; the final
    `state_dict`s compared bit for bit. Returns "identical" or what differs; where they differ, a second straight
    run tells a resume that is not exact from a device that does not repeat itself."""
    half = iterations // 2
    common = setup.args(folder, "--trainer.deterministic=true") if deterministic else setup.args(folder)

    def fit(name: str, count: int, *extra: str) -> dict:
        genlab_main(["fit", *common, f"--trainer.logger.init_args.name={name}",
                     f"--trainer.max_steps={optimizer_steps(model, count)}", *extra])
        (path,) = (folder / name).glob("*/checkpoints/last.ckpt")
        return torch.load(path, map_location="cpu", weights_only=True)

    straight = fit("straight", iterations)
    fit("resumed", half)
    resumed = fit("resumed", iterations, "--ckpt_path=last")
    done = [c["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] for c in (straight, resumed)]
    if done != [iterations, iterations]:
        return f"iterations {done[0]} straight, {done[1]} resumed (expected {iterations})"
    differ = differing_tensors(straight["state_dict"], resumed["state_dict"])
    if not differ:
        return "identical"
    again = differing_tensors(straight["state_dict"], fit("straight_again", iterations)["state_dict"])
    why = ("two straight runs differ too: this device does not repeat a run, try --deterministic" if again
           else "two straight runs agree: the resume is not exact")
    return f"{len(differ)} of {len(straight['state_dict'])} tensors differ ({why}): {', '.join(differ)}"


def differing_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """The keys whose tensors are not bit-identical (or that only one side has)."""
    return sorted(set(a) ^ set(b)) + [key for key in a if key in b and not torch.equal(a[key], b[key])]


def check_model(setup: Setup, device: torch.device, budget: Budget, resume_iterations: int, deterministic: bool,
                work: Path) -> Row:
    row = Row(setup.case.name)
    try:
        model = count_syncs(setup, work / "syncs", device, row)
        time_both_paths(setup, work / "timing", device, budget, row)
        row.resume = check_resume(setup, work / "resume", resume_iterations, deterministic, model)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - one model's failure must not hide the others
        last = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
        row.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}{where}"
    return row


# --------------------------------------------------------------------------- printing
def rate_text(rates: tuple[float, float] | None) -> tuple[str, str, str]:
    """(genlab it/s, plain it/s, genlab/plain) as printed."""
    if rates is None:
        return "-", "-", "-"
    plain, genlab = rates
    return f"{genlab:.1f}", f"{plain:.1f}", f"{genlab / plain:.2f}x"


def print_details(row: Row, device: torch.device, resume_iterations: int) -> None:
    print(f"\n== {row.model}")
    if row.path is not None:
        tf32 = "n/a" if row.path.tf32 is None else "on" if row.path.tf32 else "off"
        print(f"  automatic choice: precision {row.path.precision}, memory format {row.path.memory_format},"
              f" TF32 {tf32}; why: {row.path.reason}")
    if row.syncs is not None:
        print(f"  host syncs per ordinary iteration: {row.syncs}"
              + ("" if not row.where else "; from: " + "; ".join(f"{n}x {place}" for place, n in row.where.items())))
        kind = ("device memory of that fit (max_memory_allocated)" if device.type == "cuda"
                else "memory: the process's peak RSS so far (a CPU has no device memory to count apart)")
        print(f"  peak {kind}: {row.memory}")
    if row.rates is not None:
        genlab, plain, ratio = rate_text(row.rates)
        path = f"{row.path.precision}, {row.path.memory_format}" if row.path else "?"
        print(f"  genlab ({path}): {genlab} it/s, plain fp32 loop {plain} it/s, genlab/plain {ratio}")
    if row.fp32_rates is not None:
        genlab, plain, ratio = rate_text(row.fp32_rates)
        same = " (the default path is fp32: the same run)" if row.fp32_rates is row.rates else ""
        print(f"  genlab ({FP32}, {row.fp32_layout}): {genlab} it/s, plain fp32 loop {plain} it/s, genlab/plain"
              f" {ratio}{same}")
    if row.resume is not None:
        half = resume_iterations // 2
        print(f"  resume: {resume_iterations} iterations straight vs {half} + {resume_iterations - half} from"
              f" last.ckpt: {row.resume}")
    if row.error:
        print(f"  error: {row.error}")


def print_table(rows: list[Row], device: str) -> None:
    header = ["model", "device", "precision (why)", "syncs/it", "genlab it/s", "plain it/s", "ratio", "fp32 ratio",
              "peak memory", "resume"]
    lines = []
    for row in rows:
        precision = f"{row.path.precision} ({row.path.reason})" if row.path else "-"
        genlab, plain, ratio = rate_text(row.rates)
        fp32_ratio = rate_text(row.fp32_rates)[2]
        resume = row.resume if row.resume in (None, "identical") else "DIFFERS"
        lines.append([row.model, device, precision, "-" if row.syncs is None else str(row.syncs), genlab, plain,
                      ratio, fp32_ratio, row.memory, "error" if row.error else resume or "-"])
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    print()
    for line in [header, ["-" * width for width in widths], *lines]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


# --------------------------------------------------------------------------- the command
def write_tiny_mnist(root: Path, train: int = 112, test: int = 16) -> Path:
    """Random 28x28 digits in torchvision's raw idx layout (`--tiny`: 96 training images after 16 held out)."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)),
                            ("labels-idx1", (np.arange(count) % 10).astype(np.uint8))):
            header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
    return root


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CASES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--data-dir", default=os.environ.get("GENLAB_DATA_DIR"),
                        help="data root holding MNIST/raw (default: $GENLAB_DATA_DIR); not read with --tiny")
    parser.add_argument("--tiny", action="store_true",
                        help="CI mode: tiny random data written to a temporary folder, small networks, few iterations")
    parser.add_argument("--iterations", type=int, help="timed iterations per side (default: time-based)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="without --iterations: timed seconds per side and path (default %(default)s)")
    parser.add_argument("--warmup", type=int, help="untimed iterations per side (default: per model, 5-100)")
    parser.add_argument("--resume-iterations", type=int, help="K of the resume check (default 20; 8 with --tiny)")
    parser.add_argument("--deterministic", action="store_true",
                        help="the resume check's fits with --trainer.deterministic=true")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads (default: torch's; 1 with --tiny, where CI shares cores)")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    if unknown := [name for name in args.models if name not in CASES]:
        parser.error(f"unknown model {unknown[0]!r}: choose from {', '.join(CASES)}")
    if args.tiny:
        args.iterations = args.iterations or 6
        args.warmup = 2 if args.warmup is None else args.warmup
        args.threads = args.threads or 1
    for name, least in (("iterations", 1), ("resume_iterations", 2), ("threads", 1)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}")
    args.resume_iterations = args.resume_iterations or (8 if args.tiny else 20)
    needs_images = any(CASES[name].images for name in args.models)
    if needs_images and not args.tiny and not (args.data_dir and (Path(args.data_dir) / "MNIST" / "raw").is_dir()):
        where = f"no MNIST/raw in {args.data_dir}" if args.data_dir else "no data root"
        parser.error(f"{where}: pass --data-dir (or set GENLAB_DATA_DIR) to a folder holding MNIST/raw, or use --tiny")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet()
    answer_gpu_checks_once_without_gpus()
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = training_device()
    try:
        for line in describe_device(device):
            print(line)
        budget_text = f"{args.iterations} iterations" if args.iterations else f"{args.seconds:g} s"
        print(f"timing: {budget_text} per side after warm-up, genlab and the plain loop in alternating blocks;"
              f" resume check: {args.resume_iterations} iterations"
              + (", --trainer.deterministic=true" if args.deterministic else "")
              + ("; --tiny: random data and small networks" if args.tiny else ""), flush=True)
        rows = []
        with tempfile.TemporaryDirectory(prefix="gpu_check-") as temporary:
            work = Path(temporary)
            data_dir = write_tiny_mnist(work / "data") if args.tiny else Path(args.data_dir or ".")
            for name in args.models:
                case = CASES[name]
                budget = Budget(case.warmup if args.warmup is None else args.warmup, args.iterations, args.seconds)
                row = check_model(Setup(case, data_dir, args.tiny), device, budget, args.resume_iterations,
                                  args.deterministic, work / name)
                print_details(row, device, args.resume_iterations)
                sys.stdout.flush()
                rows.append(row)
        print_table(rows, "cuda" if device.type == "cuda" else "cpu")
        failed = [f"{row.model} ({', '.join(row.failures())})" for row in rows if row.failures()]
        print("\nFAILED: " + "; ".join(failed) if failed else
              "\npassed: every model ran, no host sync in an ordinary iteration, every resume identical")
        return 1 if failed else 0
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
