"""Faults survived and bad input answered: corrupt checkpoints, SIGKILL and resume, DDP, one-line errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from genlab.callbacks.graceful_stop import DECISION_LAG
from tests.helpers import EXPERIMENTS, REPO, TINY_GAN, error_line, load_checkpoint, write_tiny_mnist

GENLAB = [sys.executable, "-m", "genlab.cli"]


def test_previous_checkpoint_is_kept_and_a_corrupt_one_is_named(run_cli, tiny_data, tmp_path, capsys):
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=2")
    checkpoints = tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints"
    assert load_checkpoint(checkpoints / "previous.ckpt")["global_step"] == 10  # the end of epoch 1
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 20
    previous_bytes = (checkpoints / "previous.ckpt").read_bytes()
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated, as by a full disk
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=3", "--ckpt_path=last")
    assert exit_info.value.code == 2
    line = error_line(capsys)
    relative = checkpoints.relative_to(tmp_path)  # --ckpt_path last resolves inside the working directory
    assert f"checkpoint {relative / 'last.ckpt'} is truncated or corrupt" in line
    assert line.endswith(f"resume from the previous one: --ckpt_path {relative / 'previous.ckpt'}")
    assert (checkpoints / "previous.ckpt").read_bytes() == previous_bytes  # the good one is untouched
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=3",
            f"--ckpt_path={checkpoints / 'previous.ckpt'}")
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 30


def test_checkpoint_from_other_network_settings_is_explained(run_cli, tiny_data, tmp_path, capsys):
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1")
    checkpoint = tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=2",
                "--model.init_args.generator.init_args.latent_dim=50", f"--ckpt_path={checkpoint}")
    line = error_line(capsys)
    assert "generator.net.0.weight is (32, 10) in the checkpoint but (32, 50) in the model" in line
    assert "config.yaml" in line


@pytest.mark.parametrize(
    "override, expected",
    [
        ("--model.init_args.n_critic=0", "model.n_critic must be at least 1, got 0"),
        ("--model.init_args.generator_optimizer.init_args.lr=-0.001",
         "model.generator_optimizer: Invalid learning rate: -0.001"),
        ("--data.init_args.batch_size=0", "data.batch_size must be at least 1, got 0"),
        ("--model.init_args.generator.init_args.latent_dimm=4",
         "config key model.generator: Option 'latent_dimm' is not accepted (genlab.nets.MLPGenerator)"),
        ("--model.init_args.loss=wasserstien", "config key model.loss: 'wasserstien' is not one of 'minimax'"),
        ("--trainer.max_epoch=3", "unrecognized arguments: --trainer.max_epoch=3"),
        ("--model.init_args.generator.init_args.num_classes=10",
         "model.generator has num_classes 10 but model.discriminator has 0"),
    ],
)
def test_bad_settings_get_one_line_before_training(override, expected, run_cli, tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1", override)
    assert exit_info.value.code == 2
    assert expected in error_line(capsys)
    assert not list(tmp_path.glob("lightning_logs/*/*/checkpoints/*.ckpt"))  # stopped before training


@pytest.mark.parametrize(
    "yaml, expected",
    [
        ("model:\n  init_args:\n    n_critics: 5\n", "Option 'n_critics' is not accepted (genlab.models.GAN)"),
        ("trainer:\n  max_epoch: 5\n", "does not accept option 'trainer.max_epoch'"),
    ],
)
def test_unknown_key_in_a_yaml_file(yaml, expected, run_cli, tiny_data, tmp_path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml)
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_GAN, "--config", str(extra), f"--data.data_dir={tiny_data}")
    assert expected in error_line(capsys)


def _subprocess_env(data: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "GENLAB_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}


def _fit_command(*extra: str) -> list[str]:
    return [*GENLAB, "fit", *TINY_GAN, "--trainer.max_epochs=3", *extra]


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    """Until the run has written `path`; fails if it ends first."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, f"the run ended before writing {path.name}"
        time.sleep(0.2)


def _paused_after_iteration_8(tmp_path: Path, env: dict[str, str], name: str) -> tuple[subprocess.Popen, Path]:
    """A tiny GAN run with a checkpoint at iteration 7 (epoch 2), started and left paused after iteration 8."""
    process = subprocess.Popen(
        _fit_command(f"--trainer.logger.init_args.name={name}", "--checkpoint.every_n_iterations=7",
                     "--trainer.callbacks+=tests.pause.PauseAfterIteration", "--trainer.callbacks.iteration=8"),
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    checkpoints = tmp_path / "lightning_logs" / name / "version_0" / "checkpoints"
    _wait_for(checkpoints / "epoch=1-step=14.ckpt", process)
    time.sleep(1.0)  # now paused after iteration 8
    return process, checkpoints


def _resumed_equals_unbroken(tmp_path: Path, env: dict[str, str], command: list[str], name: str, steps: int) -> None:
    """`command --ckpt_path=last` continues run `name` to the end, bit-identical to the unbroken run `straight`."""
    subprocess.run([*command, f"--trainer.logger.init_args.name={name}", "--ckpt_path=last"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    straight = load_checkpoint(tmp_path / "lightning_logs" / "straight" / "version_0" / "checkpoints" / "last.ckpt")
    resumed = load_checkpoint(tmp_path / "lightning_logs" / name / "version_0" / "checkpoints" / "last.ckpt")
    assert straight["global_step"] == resumed["global_step"] == steps
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


@pytest.mark.slow
def test_sigkill_then_resume_loses_nothing_since_the_checkpoint(tmp_path):
    data = write_tiny_mnist(tmp_path / "data")
    env = _subprocess_env(data)
    subprocess.run(_fit_command("--trainer.logger.init_args.name=straight"), cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    process, killed = _paused_after_iteration_8(tmp_path, env, "killed")
    process.send_signal(signal.SIGKILL)  # one iteration past the checkpoint is lost
    process.communicate()
    assert load_checkpoint(killed / "last.ckpt")["global_step"] == 14
    _resumed_equals_unbroken(tmp_path, env, _fit_command(), "killed", steps=30)


@pytest.mark.slow
@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_sigterm_or_sigint_finishes_the_iteration_saves_last_and_resume_is_exact(name, status, tmp_path):
    """A scheduler's SIGTERM or a Ctrl-C mid-run: the iteration ends, last.ckpt holds it, the exit status says the
    run did not finish, one line says how to resume, and the resumed run ends bit-identical to an unbroken one."""
    data = write_tiny_mnist(tmp_path / "data")
    env = _subprocess_env(data)
    subprocess.run(_fit_command("--trainer.logger.init_args.name=straight"), cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    process, stopped = _paused_after_iteration_8(tmp_path, env, "stopped")
    process.send_signal(getattr(signal, name))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr[-2000:]
    last_line = [line for line in stderr.splitlines() if line.startswith("genlab: stopped")]
    assert last_line == [(f"genlab: stopped by {name} after iteration 8;"
                         f" saved {Path('lightning_logs/stopped/version_0/checkpoints/last.ckpt')};"
                         f" resume with: {' '.join(last_line[0].split('resume with: ')[1:])}")]
    assert last_line[0].endswith("--ckpt_path last") and "fit --config" in last_line[0]
    assert load_checkpoint(stopped / "last.ckpt")["global_step"] == 16  # 8 iterations, not the 14 of iteration 7
    assert load_checkpoint(stopped / "previous.ckpt")["global_step"] == 14
    _resumed_equals_unbroken(tmp_path, env, _fit_command(), "stopped", steps=30)


@pytest.mark.slow
def test_a_second_signal_exits_at_once_and_leaves_every_checkpoint_whole(tmp_path):
    data = write_tiny_mnist(tmp_path / "data")
    process = subprocess.Popen(
        _fit_command("--trainer.logger.init_args.name=twice", "--checkpoint.every_n_iterations=2",
                     "--trainer.max_epochs=1000"),
        cwd=tmp_path, env=_subprocess_env(data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    folder = tmp_path / "lightning_logs" / "twice" / "version_0" / "checkpoints"
    _wait_for(folder / "last.ckpt", process)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 143
    for path in folder.glob("*.ckpt"):  # whatever was being written, no file under a real name is half-written
        assert load_checkpoint(path)["global_step"] > 0, path


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_once_and_resumes(tmp_path):
    data = write_tiny_mnist(tmp_path / "data", train=112)
    env = _subprocess_env(data)
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
           "--trainer.callbacks+=genlab.callbacks.SampleGrid", "--trainer.callbacks.every_n_iterations=3"]
    first = subprocess.run([*GENLAB, "fit", *TINY_GAN, *ddp, "--trainer.max_epochs=1"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    runs = list((tmp_path / "lightning_logs" / "gan_mnist").iterdir())
    assert [r.name for r in runs] == ["version_0"]
    run = runs[0]
    # 96 training images, batch 16, two ranks: 3 batches per rank and epoch
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2 * 3
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["iteration_0000003.png"]
    rng = load_checkpoint(run / "checkpoints" / "last.ckpt")["genlab_rng_states"]["per_rank"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])  # each rank its own noise
    second = subprocess.run([*GENLAB, "fit", *TINY_GAN, *ddp, "--trainer.max_epochs=2", "--ckpt_path=last"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2 * 6
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["iteration_0000003.png", "iteration_0000006.png"]
    assert (run / "config.resume-1.yaml").is_file()


@pytest.mark.slow
def test_the_generator_average_is_identical_on_every_ddp_process_and_is_what_the_checkpoint_holds(tmp_path):
    data = write_tiny_mnist(tmp_path / "data", train=112)
    command = [*GENLAB, "fit", *TINY_GAN, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
               "--trainer.max_epochs=3", "--model.init_args.ema_decay=0.9", "--model.init_args.ema_warmup_iterations=2",
               "--trainer.callbacks+=tests.pause.SaveAveragePerRank", f"--trainer.callbacks.folder={tmp_path}"]
    done = subprocess.run(command, cwd=tmp_path, env=_subprocess_env(data), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    # weights (this MLP generator has no BatchNorm, whose running statistics are each process's own)
    for name, value in ranks[0]["average"].items():
        assert torch.equal(value, ranks[1]["average"][name]), name
    # 9 iterations, 2 of them warm-up copies: an average that really averaged, not a copy of the generator
    assert int(ranks[0]["average"]["updates"]) == 7
    assert any(not torch.equal(ranks[0]["average"][f"average.{name}"], value)
               for name, value in ranks[0]["generator"].items())
    saved = load_checkpoint(tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt")
    for name, value in ranks[0]["average"].items():
        assert torch.equal(saved["state_dict"][f"generator_average.{name}"], value), name


@pytest.mark.slow
def test_sigterm_to_the_first_ddp_process_stops_all_at_one_iteration_and_resume_is_exact(tmp_path):
    """`kill PID` of a DDP run: only the first process gets the signal, yet both ranks stop after the same
    iteration (DECISION_LAG after the one the signal came in, as the flags are read without waiting), one last.ckpt
    holds both ranks' random states, and resuming ends bit-identical to an unbroken run."""
    data = write_tiny_mnist(tmp_path / "data", train=112)
    env = _subprocess_env(data)
    ddp = [*GENLAB, "fit", *TINY_GAN, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
           "--trainer.max_epochs=4"]
    subprocess.run([*ddp, "--trainer.logger.init_args.name=straight"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    process = subprocess.Popen(
        [*ddp, "--trainer.logger.init_args.name=stopped", "--checkpoint.every_n_iterations=4",
         "--trainer.callbacks+=tests.pause.PauseAfterIteration", "--trainer.callbacks.iteration=5",
         "--trainer.callbacks.seconds=5"],  # the second rank, never signalled, pauses the full 5 s
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    stopped = tmp_path / "lightning_logs" / "stopped" / "version_0" / "checkpoints"
    _wait_for(stopped / "epoch=1-step=8.ckpt", process, seconds=180)  # iteration 4; both ranks then pause after 5
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    stop = 5 + DECISION_LAG
    assert sum(line.startswith(f"genlab: stopped by SIGTERM after iteration {stop}")
               for line in stderr.splitlines()) == 1
    checkpoint = load_checkpoint(stopped / "last.ckpt")
    assert checkpoint["global_step"] == 2 * stop and len(checkpoint["genlab_rng_states"]["per_rank"]) == 2
    _resumed_equals_unbroken(tmp_path, env, ddp, "stopped", steps=2 * 12)


@pytest.mark.slow
def test_vae_trains_and_validates_under_ddp_on_two_cpu_processes(tmp_path):
    data = write_tiny_mnist(tmp_path / "data", train=112)
    vae = ["--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--data.init_args.batch_size=16",
           "--data.init_args.val_size=16", "--trainer.enable_progress_bar=false", "--evaluate=false",
           "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_epochs=1"]
    done = subprocess.run([*GENLAB, "fit", *vae], cwd=tmp_path, env=_subprocess_env(data), capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "lightning_logs" / "vae_mnist" / "version_0"
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 3  # 96 images, batch 16, two ranks: 3 steps per rank
    assert len(checkpoint["genlab_rng_states"]["per_rank"]) == 2
    assert sorted(p.name for p in (run / "interpolation").iterdir()) == ["different_classes.png", "same_class.png"]

    # predict from the checkpoint on two processes and on one: every rank fits the same sampling mixture, and
    # each test item gets the same image however the items are sharded
    written = {}
    for devices in (2, 1):
        strategy = ["--trainer.strategy=ddp", "--trainer.accelerator=cpu"] if devices > 1 else []
        predict = [arg for arg in vae if "strategy" not in arg and "devices" not in arg and "max_epochs" not in arg]
        done = subprocess.run([*GENLAB, "predict", *predict, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                               f"--trainer.devices={devices}", *strategy, "--trainer.limit_predict_batches=1",
                               "--trainer.logger.init_args.name=predict",
                               f"--trainer.logger.init_args.version={devices}"],
                              cwd=tmp_path, env=_subprocess_env(data), capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        folder = tmp_path / "lightning_logs" / "predict" / f"version_{devices}" / "predictions"
        written[devices] = {path.name: path.read_bytes() for path in folder.glob("0*.png")}
    assert len(written[2]) == 32 and len(written[1]) == 16  # one batch of 16 per process
    assert all(written[2][name] == image for name, image in written[1].items())


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "payload": RunsCode()}, path)
    return path


@pytest.mark.parametrize("kind", ["pickled code", "folder", "text file", "plain tensors", "missing", "unreadable"])
def test_a_ckpt_path_that_is_no_genlab_checkpoint_is_one_line_and_runs_nothing(kind, run_cli, tiny_data, tmp_path,
                                                                               capsys):
    marker = tmp_path / "code-ran"
    path = {
        "pickled code": lambda: _evil_checkpoint(tmp_path / "evil.ckpt", marker),
        "folder": lambda: tmp_path,
        "text file": lambda: (tmp_path / "notes.ckpt").write_text("not a checkpoint") and tmp_path / "notes.ckpt",
        "plain tensors": lambda: torch.save({"w": torch.zeros(2)}, tmp_path / "w.pt") or tmp_path / "w.pt",
        "missing": lambda: tmp_path / "nowhere.ckpt",
        "unreadable": lambda: (tmp_path / "locked.ckpt").write_bytes(b"x") and tmp_path / "locked.ckpt",
    }[kind]()
    if kind == "unreadable":
        path.chmod(0)
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read any file")
    expected = {"pickled code": "holds pickled Python objects, which genlab never loads",
                "folder": "is a folder, not a checkpoint file", "text file": "is truncated or corrupt",
                "plain tensors": "not a Lightning checkpoint", "missing": "does not exist",
                "unreadable": "cannot be read (permission denied)"}[kind]
    for subcommand in ("fit", "test"):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run_cli(subcommand, *TINY_GAN, f"--data.data_dir={tiny_data}", f"--ckpt_path={path}")
        assert exit_info.value.code == 2
        line = error_line(capsys)
        assert line.startswith(f"genlab: error: checkpoint {path} ") and expected in line, line
    assert not marker.exists()  # nothing in the file was executed


@pytest.mark.slow
def test_two_runs_of_one_experiment_started_together_get_their_own_folders(tmp_path):
    data = write_tiny_mnist(tmp_path / "data")
    command = _fit_command("--trainer.max_epochs=1")
    processes = [subprocess.Popen(command, cwd=tmp_path, env=_subprocess_env(data), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr[-2000:]
    runs = sorted((tmp_path / "lightning_logs" / "gan_mnist").iterdir())
    assert [run.name for run in runs] == ["version_0", "version_1"]
    for run in runs:  # each its own config and checkpoint, neither overwritten by the other
        assert (run / "config.yaml").is_file() and not (run / "config.resume-1.yaml").exists()
        assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2 * 5


@pytest.fixture()
def small_disk(tmp_path):
    """A 2 MB file system (tmpfs), where a run soon fills the disk; skipped where mounting is not allowed."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()[:80]})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_with_every_written_file_whole(small_disk, tmp_path):
    data = write_tiny_mnist(tmp_path / "data")
    done = subprocess.run(
        _fit_command("--trainer.max_epochs=200", "--checkpoint.every_n_iterations=1",
                     f"--trainer.logger.init_args.save_dir={small_disk}",
                     "--trainer.callbacks+=genlab.callbacks.SampleGrid", "--trainer.callbacks.every_n_iterations=1"),
        cwd=tmp_path, env=_subprocess_env(data), capture_output=True, text=True, timeout=300,
        check=False,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("genlab: error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    assert "no space left on the device for" in errors[0] and "free some space and resume" in errors[0]
    assert "Traceback" not in done.stderr
    run = small_disk / "gan_mnist" / "version_0"
    assert not list(run.rglob("*.partial")) and not list(run.rglob(".*partial"))  # no temporary file left
    checkpoints = list((run / "checkpoints").glob("*.ckpt"))
    assert checkpoints and all(load_checkpoint(path)["global_step"] > 0 for path in checkpoints)
    for grid in (run / "samples").glob("*.png"):
        with Image.open(grid) as image:
            image.load()  # decodes: no half-written PNG under a real name
    newest = max(load_checkpoint(path)["global_step"] for path in checkpoints)
    epochs = load_checkpoint(max(checkpoints, key=lambda path: load_checkpoint(path)["global_step"]))["epoch"] + 2
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)  # space freed: the run
    # continues from its newest whole checkpoint
    resumed = subprocess.run(
        [*GENLAB, "fit", *TINY_GAN, f"--trainer.max_epochs={epochs}",
         f"--trainer.logger.init_args.save_dir={small_disk}", "--ckpt_path=last"],
        cwd=tmp_path, env=_subprocess_env(data), capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] > newest


def test_a_line_that_does_not_fit_is_not_appended_at_all(small_disk):
    from genlab.atomic_files import append_jsonl
    from genlab.errors import GenlabError

    log = small_disk / "metrics.jsonl"
    append_jsonl(log, {"iteration": 1})
    before = log.read_bytes()
    (small_disk / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - 64 * 1024))  # the disk is nearly full now
    with pytest.raises(GenlabError, match=r"no space left on the device for .*metrics.jsonl \(0\.\d MB needed"):
        append_jsonl(log, {"scores": "x" * 200_000})
    assert log.read_bytes() == before  # no half line


def test_a_writer_thread_meeting_a_full_disk_leaves_the_one_line_to_the_main_thread(capsys):
    import errno
    import threading

    from genlab.cli import _quiet_about_full_disks

    def run(error: BaseException) -> str:
        thread = threading.Thread(target=lambda: None)
        _quiet_about_full_disks(threading.ExceptHookArgs([type(error), error, None, thread]))
        return capsys.readouterr().err

    assert run(OSError(errno.ENOSPC, "No space left on device")) == ""
    assert "ValueError: a real bug" in run(ValueError("a real bug"))  # other errors are shown as before


@pytest.mark.slow
def test_a_slurm_job_signalled_before_its_time_limit_requeues_and_continues_its_own_run_exactly(tmp_path):
    """SIGUSR1 (`--signal=B:USR1@…`) mid-run: the iteration ends, last.ckpt is saved in slurm-<job id>, the job asks
    `scontrol requeue`; started again with the same job id, the fit resumes that folder to the end, bit-identical to
    an unbroken run."""
    data = write_tiny_mnist(tmp_path / "data")
    env = _subprocess_env(data)
    subprocess.run(_fit_command("--trainer.logger.init_args.name=straight"), cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # SLURM's command, recorded instead of run
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.calls'}\n")
    scontrol.chmod(0o755)
    slurm_env = {**env, "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "gan", "SLURM_NTASKS": "1", "SLURM_PROCID": "0",
                 "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "PATH": f"{bin_dir}:{env['PATH']}"}
    command = _fit_command("--trainer.logger.init_args.name=job", "--checkpoint.every_n_iterations=7",
                           "--trainer.callbacks+=tests.pause.PauseAfterIteration", "--trainer.callbacks.iteration=8")
    process = subprocess.Popen(command, cwd=tmp_path, env=slurm_env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    run = tmp_path / "lightning_logs" / "job" / "slurm-4242"
    _wait_for(run / "checkpoints" / "epoch=1-step=14.ckpt", process)
    time.sleep(1.0)  # paused after iteration 8
    process.send_signal(signal.SIGUSR1)
    _, stderr = process.communicate(timeout=120)
    assert "genlab: stopped by SIGUSR1 after iteration 8" in stderr and "job 4242 requeued" in stderr, stderr[-2000:]
    assert process.returncode == 128 + signal.SIGUSR1
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 4242\n"
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 16
    requeued = subprocess.run(_fit_command("--trainer.logger.init_args.name=job"), cwd=tmp_path,
                              env={**slurm_env, "SLURM_RESTART_COUNT": "1"}, capture_output=True, text=True,
                              check=False)
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert sorted(path.name for path in run.parent.iterdir()) == ["slurm-4242"]  # the same run, not a new one
    straight = load_checkpoint(tmp_path / "lightning_logs" / "straight" / "version_0" / "checkpoints" / "last.ckpt")
    resumed = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert straight["global_step"] == resumed["global_step"] == 30
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    another = subprocess.run(_fit_command("--trainer.logger.init_args.name=job", "--trainer.max_epochs=1"),
                             cwd=tmp_path, env=slurm_env, capture_output=True, text=True, check=False)
    assert another.returncode == 0, another.stderr[-2000:]  # a second fit in the same job: a run of its own
    assert sorted(path.name for path in run.parent.iterdir()) == ["slurm-4242", "version_0"]
