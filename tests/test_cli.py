"""The real CLI, in-process, end to end on tiny data: fit, checkpoints, sample grids, resume, errors."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.helpers import EXPERIMENTS, TINY_GAN, load_checkpoint


def test_fit_writes_checkpoint_sample_grid_and_config(run_cli, tiny_data, tmp_path):
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1",
            "--trainer.callbacks+=genlab.callbacks.SampleGrid", "--trainer.callbacks.every_n_iterations=2")
    run = tmp_path / "lightning_logs" / "gan_mnist" / "version_0"
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 2 * (80 // 16)  # a D and a G step per batch
    assert any(key.startswith("generator.") for key in checkpoint["state_dict"])
    grids = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert "iteration_0000005.png" in grids and "iteration_0000002.png" in grids
    with Image.open(run / "samples" / "iteration_0000005.png") as grid:
        assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 tiles of 28 px with 2 px padding
    assert (run / "config.yaml").is_file()
    assert list(run.glob("events.out.tfevents.*"))


@pytest.mark.parametrize("setting", [[], ["--model.init_args.augment=color,translation,cutout"]],
                         ids=["plain", "diffaugment"])
def test_resume_continues_exactly(setting, run_cli, tiny_data, tmp_path):
    """2 epochs straight == 1 epoch, then --ckpt_path last for 1 more: same weights, same fixed-noise grid (also
    with DiffAugment, whose draws come from the training stream the checkpoint saves)."""
    common = [*TINY_GAN, f"--data.data_dir={tiny_data}", *setting]
    run_cli("fit", *common, "--trainer.logger.init_args.name=straight", "--trainer.max_epochs=2")
    run_cli("fit", *common, "--trainer.logger.init_args.name=resumed", "--trainer.max_epochs=1")
    run_cli("fit", *common, "--trainer.logger.init_args.name=resumed", "--trainer.max_epochs=2", "--ckpt_path=last")
    straight = tmp_path / "lightning_logs" / "straight" / "version_0"
    resumed = tmp_path / "lightning_logs" / "resumed" / "version_0"
    assert not (tmp_path / "lightning_logs" / "resumed" / "version_1").exists()  # continued in the same folder
    a, b = (load_checkpoint(run / "checkpoints" / "last.ckpt") for run in (straight, resumed))
    assert a["global_step"] == b["global_step"] == 20
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for state_a, state_b in zip(opt_a["state"].values(), opt_b["state"].values()):
            assert torch.equal(state_a["exp_avg"], state_b["exp_avg"])
    final_grid = "iteration_0000010.png"
    assert (straight / "samples" / final_grid).read_bytes() == (resumed / "samples" / final_grid).read_bytes()
    assert (resumed / "config.yaml").is_file() and (resumed / "config.resume-1.yaml").is_file()


def test_a_fit_stopped_by_max_steps_mid_epoch_resumes_at_the_next_batch_exactly(run_cli, tiny_data, tmp_path):
    """7 iterations straight == 3 (max_steps stops mid-epoch, 5 batches an epoch), then --ckpt_path last for 4 more."""
    common = [*TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=10"]
    run_cli("fit", *common, "--trainer.logger.init_args.name=straight", "--trainer.max_steps=14")
    run_cli("fit", *common, "--trainer.logger.init_args.name=resumed", "--trainer.max_steps=6")
    run_cli("fit", *common, "--trainer.logger.init_args.name=resumed", "--trainer.max_steps=14", "--ckpt_path=last")
    a, b = (load_checkpoint(tmp_path / "lightning_logs" / name / "version_0" / "checkpoints" / "last.ckpt")
            for name in ("straight", "resumed"))
    assert a["global_step"] == b["global_step"] == 14
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


def test_resume_without_a_previous_run_is_one_line(run_cli, tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--ckpt_path=last")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("genlab: error: --ckpt_path last: no run in")
    assert "Traceback" not in err


def test_missing_data_is_one_line_naming_the_folder(run_cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tmp_path / 'empty'}", "--data.download=false")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str((tmp_path / "empty" / "MNIST" / "raw").resolve()) in err[0]


def test_data_dir_from_environment(run_cli, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA_DIR", str(tiny_data))
    run_cli("fit", *TINY_GAN, "--trainer.fast_dev_run=true")
    assert not (tmp_path / "lightning_logs").exists()  # fast_dev_run writes nothing


def test_shape_mismatch_between_data_and_networks_is_reported(run_cli, tiny_data, capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.fast_dev_run=true",
                "--model.init_args.generator.init_args.out_shape=[3, 32, 32]",
                "--model.init_args.discriminator.init_args.in_shape=[3, 32, 32]")
    err = capsys.readouterr().err
    assert "gives samples of shape (1, 28, 28) but model.generator's out_shape is (3, 32, 32)" in err


def test_print_config_and_help(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(EXPERIMENTS / "dcgan_mnist.yaml"), "--print_config")
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "genlab.nets.InfoGANGenerator" in printed and "save_last: true" in printed
    with pytest.raises(SystemExit):
        run_cli("--help")
    assert "fit" in capsys.readouterr().out


@pytest.mark.parametrize(("given", "expected"), [
    (["--trainer.limit_predict_batches=1"], 1), (["--trainer.limit_predict_batches", "3"], 3),
    (["--trainer.limit_predict_batches=1.0"], 1.0), (["--trainer.limit_predict_batches=0.25"], 0.25),
])
def test_whole_batch_limits_on_the_command_line_stay_counts(given, expected, tiny_data, monkeypatch):
    # jsonargparse alone reads "1" as 1.0, which Lightning takes as all of the batches
    from genlab.cli import GenlabCLI

    monkeypatch.setattr("sys.argv", ["genlab"])
    cli = GenlabCLI(args=[*TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.logger=false", *given], run=False)
    assert cli.trainer.limit_predict_batches == expected
    assert type(cli.trainer.limit_predict_batches) is type(expected)


def test_unknown_config_key_is_refused(run_cli, tiny_data, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--model.init_args.n_critics=5")
    assert exit_info.value.code != 0
    assert "n_critics" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["gan", "vae"])
def test_bf16_mixed_precision_trains(model, run_cli, tiny_data, tmp_path):
    """The fast path on GPUs and bf16-capable CPUs: `--trainer.precision bf16-mixed` (autocast) runs end to end."""
    if model == "gan":
        args = [*TINY_GAN]
    else:
        args = ["--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--data.init_args.batch_size=16",
                "--data.init_args.val_size=16", "--trainer.enable_progress_bar=false", "--evaluate=false"]
    run_cli("fit", *args, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1", "--trainer.precision=bf16-mixed")
    name = "gan_mnist" if model == "gan" else "vae_mnist"
    checkpoint = load_checkpoint(tmp_path / "lightning_logs" / name / "version_0" / "checkpoints" / "last.ckpt")
    weights = [value for value in checkpoint["state_dict"].values() if value.is_floating_point()]
    assert all(value.dtype == torch.float32 and torch.isfinite(value).all() for value in weights)  # fp32 master weights


@pytest.mark.parametrize("subcommand", ["test", "predict"])
def test_test_and_predict_without_a_checkpoint_refuse_untrained_weights_unless_asked(subcommand, run_cli, tiny_data,
                                                                                     tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(subcommand, *TINY_GAN, f"--data.data_dir={tiny_data}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"genlab {subcommand} without --ckpt_path would use untrained weights" in err
    assert "--allow_untrained true" in err
    run_cli(subcommand, *TINY_GAN, f"--data.data_dir={tiny_data}", "--allow_untrained=true",
            "--trainer.limit_test_batches=1", "--trainer.limit_predict_batches=1")


def test_trainer_settings_lightning_refuses_are_one_line(run_cli, tiny_data, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.limit_train_batches=-1")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genlab: error: Lightning refuses these trainer settings:")
    assert "limit_train_batches" in err[0]


def test_enable_checkpointing_false_is_honoured_without_genlab_checkpoints(run_cli, tiny_data, tmp_path):
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1",
            "--trainer.enable_checkpointing=false")
    run = tmp_path / "lightning_logs" / "gan_mnist" / "version_0"
    assert (run / "config.yaml").is_file() and not (run / "checkpoints").exists()


def test_a_run_that_stops_before_its_first_iteration_leaves_no_run_folder(run_cli, tiny_data, tmp_path):
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tmp_path / 'empty'}", "--data.download=false")
    experiment = tmp_path / "lightning_logs" / "gan_mnist"
    assert list(experiment.glob("version_*")) == []
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1")
    assert [path.name for path in experiment.glob("version_*")] == ["version_0"]  # no gap left by the failure


def test_a_run_folder_taken_by_another_run_meanwhile_is_not_shared(tmp_path, monkeypatch):
    """Two starts that list the folder at the same moment: the second mkdir fails and takes the next number."""
    from genlab.run_folder import RunClaim

    experiment = tmp_path / "lightning_logs" / "exp"
    experiment.mkdir(parents=True)
    stale_listing = list(experiment.glob("version_*"))  # empty: what both runs saw
    assert RunClaim.claim(experiment) == 0
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(stale_listing))
    assert RunClaim.claim(experiment) == 1
    RunClaim.reset()


def test_runs_are_named_after_the_experiment_file_and_overlays_do_not_rename_them(run_cli, tiny_data, tmp_path):
    overlay = EXPERIMENTS / "overlays" / "adam_beta2_0999.yaml"
    run_cli("fit", *TINY_GAN, "--config", str(overlay), f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1")
    assert [path.name for path in (tmp_path / "lightning_logs").iterdir()] == ["gan_mnist"]  # not "adam_beta2_0999"
    saved = (tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "config.yaml").read_text()
    assert "name: gan_mnist" in saved and "betas:\n        - 0.5\n        - 0.999\n" in saved


def test_last_ckpt_holds_the_final_weights_after_periodic_saves(run_cli, tiny_data, tmp_path):
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1",
            "--checkpoint.every_n_iterations=3", "--checkpoint.every_n_epochs=0")  # 5 iterations: a save at 3
    run = tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints"
    assert load_checkpoint(run / "last.ckpt")["genlab_iterations"] == 5  # not 3: the end of training is saved
    assert load_checkpoint(run / "previous.ckpt")["genlab_iterations"] == 3


def test_a_resume_with_a_changed_learning_rate_trains_with_it_and_says_so(run_cli, tiny_data, tmp_path, caplog):
    """The checkpoint's optimizer state keeps its moments and step counts but not its hyperparameters: the
    configured ones apply, one line each; unchanged settings say nothing."""
    common = [*TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.logger.init_args.name=changed"]
    run_cli("fit", *common, "--trainer.max_epochs=1")
    caplog.set_level("INFO")
    run_cli("fit", *common, "--trainer.max_epochs=2", "--ckpt_path=last",
            "--model.init_args.generator_optimizer.init_args.lr=0.5")
    changed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("genlab: resumed with model")]
    assert changed == [("genlab: resumed with model.generator_optimizer lr = 0.5 as configured;"
                        " the checkpoint had 0.001")]
    state = load_checkpoint(tmp_path / "lightning_logs" / "changed" / "version_0" / "checkpoints" / "last.ckpt")
    discriminator, generator = state["optimizer_states"]
    assert generator["param_groups"][0]["lr"] == 0.5 and discriminator["param_groups"][0]["lr"] == 0.001
    steps = {float(s["step"]) for optimizer in state["optimizer_states"] for s in optimizer["state"].values()}
    assert steps == {10.0}  # 5 updates an epoch, 2 epochs: the moments and counts came from the checkpoint


def test_a_resume_says_each_changed_setting_and_which_side_wins(run_cli, tiny_data, tmp_path, caplog):
    common = [*TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.logger.init_args.name=said"]
    run_cli("fit", *common, "--trainer.max_epochs=1")
    caplog.set_level("INFO")
    run_cli("fit", *common, "--trainer.max_epochs=2", "--ckpt_path=last", "--seed_everything=7",
            "--model.init_args.n_critic=2")
    said = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("genlab: resumed with"))
    assert said == [
        "genlab: resumed with model.init_args.n_critic = 2 (the run had 1): the new value applies",
        ("genlab: resumed with seed_everything = 7 (the run had 0): the checkpoint's random streams continue, so it"
        " has no effect"),
        "genlab: resumed with trainer.max_epochs = 2 (the run had 1): the new value applies",
    ]


def test_a_batch_larger_than_the_data_is_refused_before_anything_slow(run_cli, tiny_data, capsys, monkeypatch):
    monkeypatch.setattr("genlab.precision.measure_paths", lambda *args: pytest.fail("timed before the check"))
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--data.init_args.batch_size=100000")
    assert capsys.readouterr().err.strip() == ("genlab: error: data.batch_size 100,000 is larger than the 80 training"
                                               " samples: lower data.batch_size (to 80 for full-batch training)")


def test_under_ddp_a_batch_larger_than_each_process_share_is_refused_before_anything_starts(run_cli, tiny_data,
                                                                                            capsys, monkeypatch):
    monkeypatch.setattr("genlab.precision.measure_paths", lambda *args: pytest.fail("timed before the check"))
    with pytest.raises(SystemExit):  # 80 training images over 4 processes: 20 each, fewer than a batch of 32
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--data.init_args.batch_size=32",
                "--data.init_args.drop_last=true", "--trainer.strategy=ddp", "--trainer.devices=4",
                "--trainer.accelerator=cpu")
    assert capsys.readouterr().err.strip() == (
        "genlab: error: data.batch_size 32 is larger than the 20 training samples each of the 4 processes gets (80 in"
        " all), so no batch would be trained: lower data.batch_size to 20 or less, or use fewer devices")


@pytest.mark.parametrize(("settings", "processes"), [({"devices": 4, "num_nodes": 2}, 8), ({"devices": [0, 1]}, 2),
                                                      ({"devices": "3"}, 3), ({"devices": "auto"}, 1), ({}, 1)])
def test_the_planned_process_count_is_read_from_the_trainer_settings(settings, processes):
    from genlab.cli import planned_processes

    assert planned_processes(settings) == processes


def assert_same_tensors(a: object, b: object, where: str = "checkpoint") -> None:
    """Every tensor (and number) of two nested checkpoint structures equal, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{index}]")


RESUMED_SETTINGS = {  # beyond the MLP GAN in fp32: BatchNorm, bf16 autocast, a VAE under automatic optimization
    "dcgan_mnist_bf16": ["--config", str(EXPERIMENTS / "dcgan_mnist.yaml"), "--trainer.precision=bf16-mixed",
                         "--model.init_args.generator.init_args.latent_dim=4"],
    "vae_mnist": ["--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--model.init_args.encoder.init_args.hidden=[32]",
                  "--model.init_args.decoder.init_args.hidden=[32]"],
}


@pytest.mark.parametrize("setting", RESUMED_SETTINGS)
def test_resume_is_bit_exact_for_batchnorm_in_bf16_and_for_the_vae(setting, run_cli, tiny_data, tmp_path):
    common = [*RESUMED_SETTINGS[setting], f"--data.data_dir={tiny_data}", "--data.init_args.val_size=16",
              "--data.init_args.batch_size=16", "--evaluate=false", "--trainer.enable_progress_bar=false"]
    run_cli("fit", *common, "--trainer.logger.init_args.name=straight", "--trainer.max_epochs=2")
    run_cli("fit", *common, "--trainer.logger.init_args.name=resumed", "--trainer.max_epochs=1")
    run_cli("fit", *common, "--trainer.logger.init_args.name=resumed", "--trainer.max_epochs=2", "--ckpt_path=last")
    straight, resumed = (load_checkpoint(tmp_path / "lightning_logs" / name / "version_0" / "checkpoints" / "last.ckpt")
                         for name in ("straight", "resumed"))
    assert straight["global_step"] == resumed["global_step"] > 0
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizer_states")


def test_a_resume_from_a_checkpoint_file_keeps_the_configured_settings_and_says_so(run_cli, tiny_data, tmp_path,
                                                                                     caplog):
    """Lightning lets a checkpoint file's hyperparameters override the command line; genlab's fit does not."""
    common = [*TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.logger.init_args.name=file"]
    run_cli("fit", *common, "--trainer.max_epochs=1")
    checkpoint = tmp_path / "lightning_logs" / "file" / "version_0" / "checkpoints" / "last.ckpt"
    caplog.set_level("INFO")
    run_cli("fit", *common, "--trainer.max_epochs=2", f"--ckpt_path={checkpoint}", "--model.init_args.n_critic=2")
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("genlab: resumed with model")]
    assert said == ["genlab: resumed with model.init_args.n_critic = 2 (the run had 1): the new value applies"]
    assert "n_critic: 2" in (checkpoint.parent.parent / "config.resume-1.yaml").read_text()

