"""Every experiment YAML runs one batch (`fast_dev_run`) on tiny data, so no config can rot unnoticed."""

import pytest

from tests.helpers import EXPERIMENTS, tiny_data_arguments

CONFIGS = sorted(EXPERIMENTS.glob("*.yaml"))


def test_there_are_experiments():
    assert {p.stem for p in CONFIGS} >= {"gan_mnist", "lsgan_mnist", "dcgan_mnist", "gan_fashion"}


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_experiment_runs_one_batch(config, run_cli, tiny_data):
    run_cli("fit", "--config", str(config), *tiny_data_arguments(config, tiny_data), "--data.batch_size=8",
            "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false")


@pytest.mark.parametrize("base", ["dcgan_fashion_small", "dcgan_emoji"])
def test_the_diffaugment_overlay_runs_on_grey_and_colour_images(base, run_cli, tiny_data):
    run_cli("fit", "--config", str(EXPERIMENTS / f"{base}.yaml"), "--config", str(EXPERIMENTS / "overlays" /
            "diffaugment.yaml"), f"--data.data_dir={tiny_data}", "--data.val_size=16", "--data.train_subset=20",
            "--data.batch_size=8", "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false")


@pytest.mark.parametrize("base", ["gan_mnist", "lsgan_mnist"])
def test_the_adam_overlay_changes_only_the_betas_of_its_base(base, capsys):
    from genlab.cli import main

    def printed(*overlay: str) -> str:
        with pytest.raises(SystemExit):
            main(["fit", "--config", str(EXPERIMENTS / f"{base}.yaml"), *overlay, "--print_config"])
        return capsys.readouterr().out

    plain = printed()
    overlaid = printed("--config", str(EXPERIMENTS / "overlays" / "adam_beta2_0999.yaml"))
    assert plain.count("- 0.4999") == 2 and overlaid.count("- 0.999") == 2 and "0.4999" not in overlaid
    assert plain.replace("- 0.4999", "- 0.999") == overlaid
