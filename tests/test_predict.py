"""`genlab predict` draws what is asked: any number of samples, of chosen classes, as PNGs or one uint8 `.npz`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import EXPERIMENTS


def predicted(tmp_path, experiment: str):
    return max((tmp_path / "lightning_logs" / experiment).glob("version_*")) / "predictions"


def draw(run_cli, tiny_data, experiment: str, *extra: str) -> None:
    run_cli("predict", "--config", str(EXPERIMENTS / f"{experiment}.yaml"), f"--data.data_dir={tiny_data}",
            "--data.val_size=16", "--data.eval_batch_size=4", "--allow_untrained=true", "--evaluate=false",
            "--trainer.enable_progress_bar=false", *extra)


def test_any_number_of_samples_of_chosen_classes_as_one_npz_holding_the_pngs_bytes(run_cli, tiny_data, tmp_path):
    draw(run_cli, tiny_data, "cgan_mnist", "--num_samples=7", "--classes=[3, 5]", "--sample_format=npz")
    with np.load(predicted(tmp_path, "cgan_mnist") / "samples.npz") as stored:
        images, labels, items = stored["arr_0"], stored["labels"], stored["items"]
    assert images.dtype == np.uint8 and images.shape == (7, 28, 28, 1)
    assert labels.tolist() == [3, 5, 3, 5, 3, 5, 3] and items.tolist() == list(range(7))
    draw(run_cli, tiny_data, "cgan_mnist", "--num_samples=7", "--classes=[3, 5]")  # the same draws, as PNGs
    folder = predicted(tmp_path, "cgan_mnist")
    assert sorted(path.name for path in folder.glob("0*.png")) == [f"{item:06d}.png" for item in range(7)]
    for item in range(7):
        with Image.open(folder / f"{item:06d}.png") as png:
            assert np.array_equal(np.asarray(png.convert("L")), images[item, :, :, 0])


@pytest.mark.parametrize("experiment, plan, message", [
    ("gan_mnist", "--classes=[1]", "this model is unconditional: leave --classes out"),
    ("cgan_mnist", "--classes=[10]", "--classes [10] must lie in 0..9, the model's classes"),
    ("cgan_mnist", "--num_samples=0", "--num_samples must be at least 1, got 0"),
])
def test_a_plan_the_model_cannot_draw_is_one_line(run_cli, tiny_data, capsys, experiment, plan, message):
    with pytest.raises(SystemExit) as exit_status:
        draw(run_cli, tiny_data, experiment, plan)
    error = capsys.readouterr().err.strip().splitlines()
    assert (exit_status.value.code == 2 and len(error) == 1 and error[0].startswith("genlab: error: ")
            and message in error[0])


def test_an_unconditional_model_draws_any_number_of_colour_samples(run_cli, tiny_data, tmp_path):
    draw(run_cli, tiny_data, "dcgan_emoji", "--num_samples=5", "--sample_format=npz")
    with np.load(predicted(tmp_path, "dcgan_emoji") / "samples.npz") as stored:
        assert stored["arr_0"].shape == (5, 32, 32, 3) and stored["labels"].tolist() == [0] * 5
