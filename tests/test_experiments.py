"""Every experiment YAML runs one batch (`fast_dev_run`) on tiny data, so no config can rot unnoticed."""

import pytest

from tests.conftest import EXPERIMENTS

CONFIGS = sorted(EXPERIMENTS.glob("*.yaml"))


def test_there_are_experiments():
    assert {p.stem for p in CONFIGS} >= {"gan_mnist", "lsgan_mnist", "dcgan_mnist", "gan_fashion"}


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_experiment_runs_one_batch(config, run_cli, tiny_data):
    # the toy data set is synthetic: it has no data folder and no validation split to shrink
    data = [] if config.stem == "toy_quadratic" else [f"--data.data_dir={tiny_data}", "--data.val_size=16"]
    run_cli("fit", "--config", str(config), *data, "--data.batch_size=8", "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false")
