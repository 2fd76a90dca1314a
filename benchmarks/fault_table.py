"""Tries every fault and bad input of the reliability issue on tiny generated data and prints, as a Markdown
table, the exact line genlab answers with (and its exit status).

    python benchmarks/fault_table.py          # about a minute on a 2-core CPU; works offline

Each case runs the real CLI in-process in a fresh temporary folder; the last ones (SIGTERM / SIGINT mid-run, a
full disk on a 2 MB tmpfs, two runs started together) run real `genlab` processes. tests/test_reliability.py
checks each of them, and the DDP and second-signal cases too.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import write_tiny_emoji, write_tiny_mnist

EXPERIMENTS = REPO / "experiments"
TINY_GAN = [
    "--config", str(EXPERIMENTS / "gan_mnist.yaml"),
    "--model.init_args.generator.init_args.hidden=[32, 32]", "--model.init_args.discriminator.init_args.hidden=[16]",
    "--data.init_args.batch_size=16", "--data.init_args.val_size=16", "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false", "--evaluate=false", "--trainer.max_epochs=1",
]


def run(args: list[str]) -> tuple[int, str]:
    """(exit status, what genlab printed on stderr, last line) of `genlab ARGS`."""
    from genlab.cli import main

    err = io.StringIO()
    status = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            main(args)
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        except Exception as error:  # noqa: BLE001 - a traceback would be a defect: show it as one
            return 1, f"TRACEBACK {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    lines = [line for line in err.getvalue().splitlines() if line.startswith("genlab: error")]
    return status, lines[-1] if lines else "(no error line)"


def case_missing_data(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={root / 'nowhere'}"]


def case_truncated_idx(root: Path) -> list[str]:
    data = write_tiny_mnist(root / "data")
    images = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    return ["fit", *TINY_GAN, f"--data.data_dir={data}"]


def _emoji_args(data: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(EXPERIMENTS / "dcgan_emoji.yaml"), f"--data.data_dir={data}", "--evaluate=false",
            "--trainer.max_steps=2", "--trainer.enable_progress_bar=false", *extra]


def case_empty_emoji_folder(root: Path) -> list[str]:
    (root / "data" / "EmojiOne" / "png" / "32").mkdir(parents=True)
    return _emoji_args(root / "data", "--data.init_args.download=false")


def case_unreadable_png(root: Path) -> list[str]:
    folder = write_tiny_emoji(root / "data" / "EmojiOne" / "png" / "32", count=20)
    (folder / "emoji_007.png").write_bytes(b"\x89PNG broken")
    return _emoji_args(root / "data")


def case_image_shape_mismatch(root: Path) -> list[str]:
    write_tiny_emoji(root / "data" / "EmojiOne" / "png" / "32", count=20)
    return ["fit", *TINY_GAN, f"--data.data_dir={root / 'data'}", "--data=genlab.data.EmojiDataModule",
            "--data.init_args.batch_size=4"]


def _mnist(root: Path) -> Path:
    return write_tiny_mnist(root / "data")


def case_conditional_mismatch(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}", "--model.init_args.generator.init_args.num_classes=10"]


def case_n_critic(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}", "--model.init_args.n_critic=0"]


def case_negative_lr(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}",
            "--model.init_args.generator_optimizer.init_args.lr=-0.001"]


def case_batch_size_zero(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}", "--data.init_args.batch_size=0"]


def case_unknown_cli_key(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}", "--trainer.max_epoch=3"]


def case_unknown_yaml_key(root: Path) -> list[str]:
    config = root / "typo.yaml"
    config.write_text("model:\n  init_args:\n    generator:\n      init_args: {latent_dimm: 64}\n")
    return ["fit", *TINY_GAN, "--config", str(config), f"--data.data_dir={_mnist(root)}"]


def _trained(root: Path) -> Path:
    data = _mnist(root)
    run(["fit", *TINY_GAN, f"--data.data_dir={data}", "--trainer.max_epochs=2"])
    return data


def case_corrupt_checkpoint(root: Path) -> list[str]:
    data = _trained(root)
    last = root / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    return ["fit", *TINY_GAN, f"--data.data_dir={data}", "--trainer.max_epochs=3", "--ckpt_path=last"]


def case_checkpoint_of_other_latent_size(root: Path) -> list[str]:
    data = _trained(root)
    return ["fit", *TINY_GAN, f"--data.data_dir={data}", "--trainer.max_epochs=3", "--ckpt_path=last",
            "--model.init_args.generator.init_args.latent_dim=64"]


def case_no_run_to_resume(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}", "--ckpt_path=last"]


def case_divergence(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}",
            "--model.init_args.discriminator_optimizer.init_args.lr=1e30"]


def case_missing_classifier(root: Path) -> list[str]:
    return ["fit", "--config", str(EXPERIMENTS / "dcgan_mnist.yaml"), f"--data.data_dir={_mnist(root)}",
            "--data.init_args.val_size=16", "--trainer.max_epochs=1"]


def case_missing_inception_weights(root: Path) -> list[str]:
    os.environ["TORCH_HOME"] = str(root / "torch-home")  # an empty hub cache
    write_tiny_emoji(root / "data" / "EmojiOne" / "png" / "32", count=70)
    metrics = root / "metrics.yaml"  # dcgan_emoji.yaml's suite, scaled to 70 images
    metrics.write_text(
        "trainer:\n  callbacks:\n    - class_path: genlab.callbacks.GenerativeMetrics\n      init_args:\n"
        "        num_samples: 70\n        real_split: train\n        every_n_epochs: 0\n        suites:\n"
        "          - class_path: genlab.metrics.InceptionMetrics\n"
        "            init_args: {is_splits: 0, fid_features: 64, kid_subset_size: 10}\n"
    )
    args = _emoji_args(root / "data", "--config", str(metrics))
    args.remove("--evaluate=false")
    return args  # InceptionMetrics tries the download (30 s timeout), which fails offline


def case_ckpt_path_text_file(root: Path) -> list[str]:
    notes = root / "notes.txt"
    notes.write_text("not a checkpoint\n")
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}", f"--ckpt_path={notes}"]


def case_ckpt_path_folder(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}", f"--ckpt_path={root}"]


def case_lightning_refuses_a_trainer_setting(root: Path) -> list[str]:
    return ["fit", *TINY_GAN, f"--data.data_dir={_mnist(root)}", "--trainer.limit_train_batches=-1"]


def case_test_without_checkpoint(root: Path) -> list[str]:
    return ["test", *TINY_GAN, f"--data.data_dir={_mnist(root)}"]


CASES: list[tuple[str, Callable[[Path], list[str]]]] = [
    ("data folder missing", case_missing_data),
    ("idx file truncated", case_truncated_idx),
    ("emoji folder empty (download off)", case_empty_emoji_folder),
    ("PNG cannot be read", case_unreadable_png),
    ("image size/channels disagree with the networks", case_image_shape_mismatch),
    ("generator conditioned, data/discriminator not", case_conditional_mismatch),
    ("n_critic < 1", case_n_critic),
    ("negative learning rate", case_negative_lr),
    ("batch size 0", case_batch_size_zero),
    ("unknown key on the command line", case_unknown_cli_key),
    ("unknown key in a YAML file", case_unknown_yaml_key),
    ("truncated last.ckpt, resume", case_corrupt_checkpoint),
    ("checkpoint of another latent size", case_checkpoint_of_other_latent_size),
    ("--ckpt_path last with no run", case_no_run_to_resume),
    ("--ckpt_path a text file", case_ckpt_path_text_file),
    ("--ckpt_path a folder", case_ckpt_path_folder),
    ("a trainer setting Lightning refuses", case_lightning_refuses_a_trainer_setting),
    ("genlab test without --ckpt_path", case_test_without_checkpoint),
    ("loss/gradients diverge (lr 1e30)", case_divergence),
    ("classifier metrics without a classifier", case_missing_classifier),
    ("Inception metrics without weights, offline", case_missing_inception_weights),
]


# --- faults that need real processes: signals, a full disk, two runs at once ---------------------------------
def _genlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "genlab.cli", *args]


def _process_env(data: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "GENLAB_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}


def _stopped_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(("genlab: stopped", "genlab: error"))]
    return lines[-1] if lines else "(no genlab line)"


def process_signal(root: Path, name: str) -> tuple[int, str]:
    data = _mnist(root)
    process = subprocess.Popen(_genlab("fit", *TINY_GAN, "--trainer.max_epochs=1000"), cwd=root,
                               env=_process_env(data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = root / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(getattr(signal, name))
    _, stderr = process.communicate(timeout=120)
    return process.returncode, _stopped_line(stderr)


def process_full_disk(root: Path) -> tuple[int, str]:
    disk = root / "small_disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, check=False).returncode:
        return -1, "(not tried: mounting a small tmpfs needs root)"
    try:
        done = subprocess.run(_genlab("fit", *TINY_GAN, "--trainer.max_epochs=200", "--checkpoint.every_n_iterations=1",
                                      f"--trainer.logger.init_args.save_dir={disk}"),
                              cwd=root, env=_process_env(_mnist(root)), capture_output=True, text=True, timeout=300, check=False)
        return done.returncode, _stopped_line(done.stderr)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def process_two_at_once(root: Path) -> tuple[int, str]:
    data = _mnist(root)
    processes = [subprocess.Popen(_genlab("fit", *TINY_GAN), cwd=root, env=_process_env(data),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    statuses = [process.wait(timeout=300) for process in processes]
    folders = sorted(path.name for path in (root / "lightning_logs" / "gan_mnist").iterdir())
    return max(statuses), f"(no error: each run got its own folder: {', '.join(folders)})"


PROCESS_CASES: list[tuple[str, Callable[[Path], tuple[int, str]]]] = [
    ("SIGTERM mid-run (a scheduler, kill)", lambda root: process_signal(root, "SIGTERM")),
    ("SIGINT mid-run (Ctrl-C)", lambda root: process_signal(root, "SIGINT")),
    ("disk full while writing (2 MB tmpfs)", process_full_disk),
    ("two runs of one experiment started together", process_two_at_once),
]


def main() -> None:
    os.environ.pop("GENLAB_DATA_DIR", None)
    home = os.getcwd()
    print("| fault or bad input | exit | genlab's answer |\n|---|---|---|")
    for title, case in CASES:
        with tempfile.TemporaryDirectory() as folder:
            os.chdir(folder)
            try:
                status, line = run(case(Path(folder)))
            finally:
                os.chdir(home)
        shown = line.replace(folder, "<tmp>").replace("|", "\\|")
        print(f"| {title} | {status} | `{shown}` |", flush=True)
    for title, process_case in PROCESS_CASES:
        with tempfile.TemporaryDirectory() as folder:
            status, line = process_case(Path(folder))
        shown = line.replace(folder, "<tmp>").replace("|", "\\|")
        print(f"| {title} | {status} | `{shown}` |", flush=True)


if __name__ == "__main__":
    main()
