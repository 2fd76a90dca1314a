"""A folder of one's own images (`ImageFolderDataModule`): every common format and mode read the documented way,
labels from class sub-folders, one line for each bad input, and the folder never written to."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data import EmojiDataModule, ImageFolderDataModule
from genlab.errors import GenlabError


def fingerprint(folder: Path) -> dict[str, str]:
    """Every path under `folder` with a hash of its bytes (and its mtime): what "untouched" means."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() + str(path.stat().st_mtime_ns)
            if path.is_file() else "dir" for path in sorted(folder.rglob("*"))}


def write(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def classes_folder(root: Path) -> Path:
    """Two classes in several formats and modes, sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    folder = root / "mine"
    for index, (name, mode, size) in enumerate([
        ("cats/a.PNG", "RGBA", (32, 32)), ("cats/b.jpg", "RGB", (40, 30)), ("cats/c.WEBP", "RGB", (16, 16)),
        ("dogs/d.bmp", "L", (32, 32)), ("dogs/e.gif", "P", (32, 48)), ("dogs/f.tiff", "RGB", (64, 64)),
    ]):
        channels = {"RGBA": 4, "RGB": 3, "L": 1, "P": 1}[mode]
        pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8).squeeze()
        image = Image.fromarray(pixels, "L" if mode == "P" else mode)
        write(folder / name, image.convert("P") if mode == "P" else image)
    return folder


def test_labels_come_from_class_sub_folders_and_every_format_is_read(tmp_path):
    folder = classes_folder(tmp_path)
    before = fingerprint(folder)
    data = ImageFolderDataModule(str(folder), image_size=8, batch_size=2)
    assert data.num_classes == 2
    data.setup()
    train = data.split("train")
    assert data.class_names == ["cats", "dogs"]
    assert train.samples.shape == (6, 3, 8, 8) and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.samples.min() >= -1 and train.samples.max() <= 1
    assert fingerprint(folder) == before  # nothing written, not even a cache


def test_transparency_is_composited_onto_the_background_and_grey_has_one_channel(tmp_path):
    folder = tmp_path / "flat"
    clear = Image.new("RGBA", (4, 4), (200, 10, 10, 0))  # fully transparent red
    write(folder / "clear.png", clear)
    write(folder / "clear_too.png", clear)
    rgb = ImageFolderDataModule(str(folder), image_size=4, batch_size=1, background=(0, 255, 0))
    rgb.setup()
    pixel = rgb.split("train").samples[0, :, 0, 0]
    assert pixel.tolist() == [-1.0, 1.0, -1.0]  # the background, not the hidden red
    grey = ImageFolderDataModule(str(folder), image_size=4, batch_size=1, channels=1, background=(255, 255, 255))
    grey.setup()
    assert grey.split("train").samples.shape == (2, 1, 4, 4) and grey.num_classes == 0
    assert torch.all(grey.split("train").samples == 1.0)


def test_a_wide_image_is_centre_cropped_then_resized(tmp_path):
    pixels = np.zeros((4, 12, 3), dtype=np.uint8)
    pixels[:, 4:8] = 255  # the centred 4x4 square is white, the sides black
    write(tmp_path / "wide" / "a.png", Image.fromarray(pixels))
    write(tmp_path / "wide" / "b.png", Image.fromarray(pixels))
    data = ImageFolderDataModule(str(tmp_path / "wide"), image_size=4, batch_size=1)
    data.setup()
    assert torch.all(data.split("train").samples == 1.0)


def test_a_folder_relative_to_the_data_root_and_held_out_splits(tmp_path):
    classes_folder(tmp_path)
    data = ImageFolderDataModule("mine", data_dir=str(tmp_path), image_size=8, batch_size=2, val_size=1,
                                 test_size=1)
    data.setup()
    assert [len(data.split(name).labels) for name in ("train", "val", "test")] == [4, 1, 1]
    too_many = ImageFolderDataModule("mine", data_dir=str(tmp_path), image_size=8, batch_size=2, val_size=2,
                                     test_size=4)
    with pytest.raises(GenlabError, match=r"^data.val_size 2 \+ data.test_size 4 hold out 6 images, but .*mine has 6:"
                                          r" lower them"):
        too_many.setup()


@pytest.mark.parametrize("layout, message", [
    ("missing", "image folder .* does not exist: set data.folder"),
    ("empty", "holds no images"),
    ("text only", "holds no images"),
    ("mixed", "mixes images at its top .* with class sub-folders"),
    ("too few", "gives 2 training images, fewer than one batch of 4: lower data.batch_size"),
])
def test_bad_folders_get_one_line(layout, message, tmp_path):
    folder = tmp_path / "bad"
    image = Image.new("RGB", (4, 4))
    if layout != "missing":
        folder.mkdir()
    if layout == "text only":
        (folder / "notes.txt").write_text("no images here")
    if layout == "mixed":
        write(folder / "top.png", image)
        write(folder / "class_a" / "x.png", image)
        write(folder / "class_b" / "y.png", image)
    if layout == "too few":
        write(folder / "a.png", image)
        write(folder / "b.png", image)
    with pytest.raises(GenlabError, match=message) as error:
        ImageFolderDataModule(str(folder), image_size=4, batch_size=4).setup()
    assert "\n" not in str(error.value)


def test_an_unreadable_file_is_named_or_skipped_and_counted(tmp_path):
    folder = tmp_path / "some_bad"
    for name in ("a.png", "b.png"):
        write(folder / name, Image.new("RGB", (4, 4)))
    good = (folder / "a.png").read_bytes()
    (folder / "c.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(GenlabError, match=r"cannot read image .*c\.png .*set data.on_bad_file: skip"):
        ImageFolderDataModule(str(folder), image_size=4, batch_size=1).setup()
    data = ImageFolderDataModule(str(folder), image_size=4, batch_size=1, on_bad_file="skip")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        data.setup()
    assert len(data.split("train").labels) == 2 and [Path(p).name for p in data.skipped_files] == ["c.png"]


def test_a_folder_of_your_own_given_to_the_emoji_module_is_never_fetched_into(tmp_path, monkeypatch):
    folder = classes_folder(tmp_path)  # JPEGs and sub-folders: no top-level PNG for EmojiDataModule
    empty = tmp_path / "empty"
    empty.mkdir()
    before = fingerprint(folder)
    monkeypatch.setattr("genlab.data.emoji.fetch_emojione", lambda target: pytest.fail(f"fetched into {target}"))
    for path in (folder, empty):
        with pytest.raises(GenlabError, match="use data.class_path: genlab.data.ImageFolderDataModule"):
            EmojiDataModule(data_dir=str(tmp_path), folder=str(path)).prepare_data()
    assert fingerprint(folder) == before and not any(empty.iterdir())


def test_the_emoji_preset_reads_the_pngs_at_the_top_and_leaves_variant_sub_folders_out(tmp_path):
    """EmojiOne's png/32 holds `_alt/` and other sub-folders beside its 2,827 top-level PNGs."""
    folder = tmp_path / "EmojiOne" / "png" / "32"
    for name in ("a.png", "b.png", "_alt/c.png", "EmojiOne/png/d.png"):
        write(folder / name, Image.new("RGBA", (32, 32), (10, 20, 30, 255)))
    data = EmojiDataModule(data_dir=str(tmp_path), batch_size=1)
    data.setup()
    assert len(data.split("train").labels) == 2 and data.num_classes == 0


def loaded(folder: Path, **settings) -> ImageFolderDataModule:
    data = ImageFolderDataModule(str(folder), batch_size=1, **settings)
    data.setup()
    return data


def test_the_second_start_reads_the_cache_outside_the_folder_and_a_changed_file_is_decoded_again(
        tmp_path, monkeypatch, caplog):
    folder = classes_folder(tmp_path)
    before = fingerprint(folder)
    caplog.set_level("INFO")
    first = loaded(folder, image_size=8)
    assert "6 images of" in caplog.text and "decoded" in caplog.text
    assert len(list((tmp_path / "genlab-cache" / "image_folders").glob("*.npz"))) == 1
    assert fingerprint(folder) == before  # the cache lives in genlab's cache folder, not in the user's

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds this folder")

    monkeypatch.setattr("genlab.data.folder.load_image", no_decoding)
    second = loaded(folder, image_size=8)
    assert "read from genlab's image cache" in caplog.text
    assert torch.equal(second.split("train").samples, first.split("train").samples)
    assert torch.equal(second.split("train").labels, first.split("train").labels)
    for change in (lambda: loaded(folder, image_size=4),  # another setting
                   lambda: write(folder / "cats" / "g.png", Image.new("RGB", (8, 8))) and loaded(folder, image_size=8)):
        with pytest.raises(AssertionError, match="decoded although"):
            change()


def test_an_unreadable_cache_entry_is_decoded_again_with_a_warning(tmp_path):
    folder = classes_folder(tmp_path)
    first = loaded(folder, image_size=8)
    (entry,) = (tmp_path / "genlab-cache" / "image_folders").glob("*.npz")
    entry.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable image cache"):
        again = loaded(folder, image_size=8)
    assert torch.equal(again.split("train").samples, first.split("train").samples)


def test_a_folder_too_big_for_the_memory_limit_is_refused_in_one_line_before_decoding(tmp_path, monkeypatch):
    folder = classes_folder(tmp_path)
    monkeypatch.setattr("genlab.data.folder.load_image", lambda *args: pytest.fail("decoded before the check"))
    with pytest.raises(GenlabError, match=r"6 images of .* at 3x64x64 take 0.00 GB as float32, above the limit of"
                                          r" 0.00 GB: .*raise data.memory_limit_gb"):
        loaded(folder, image_size=64, memory_limit_gb=1e-6)  # 6 x 3 x 64 x 64 x 4 bytes = 0.29 MB > 1 kB


def test_a_training_subset_is_seeded_by_the_data_seed_and_held_in_the_original_order(tmp_path):
    folder = classes_folder(tmp_path)
    everything = loaded(folder, image_size=4).split("train").samples
    subsets = [loaded(folder, image_size=4, train_subset=3, seed=seed).split("train").samples for seed in (0, 0, 1)]
    assert subsets[0].shape[0] == 3 and torch.equal(subsets[0], subsets[1]) and not torch.equal(subsets[0], subsets[2])
    rows = [next(i for i in range(6) if torch.equal(everything[i], image)) for image in subsets[0]]
    assert rows == sorted(rows)
    with pytest.raises(GenlabError, match="train_subset is 7 but the training split has only 6 images"):
        loaded(folder, image_size=4, train_subset=7)


FOLDER_METRICS = """
trainer:
  callbacks:
    - class_path: genlab.callbacks.GenerativeMetrics
      init_args:
        num_samples: 40
        batch_size: 20
        real_split: train
        real_values: false   # the tiny test split (4 images) is too small for a Fréchet distance
        every_n_epochs: 0
        suites:
          - class_path: genlab.metrics.ClassifierMetrics
            init_args: {checkpoint: lightning_logs/classifier_folder, splits: 2}
"""


def test_a_labelled_folder_trains_its_classifier_and_a_conditional_gan_scored_per_class(run_cli, tiny_data, tmp_path,
                                                                                        capsys):
    from tests.helpers import EXPERIMENTS

    folder = ["--data.folder=mine", f"--data.data_dir={tiny_data}", "--data.val_size=4", "--data.batch_size=8",
              "--trainer.enable_progress_bar=false"]
    with pytest.raises(SystemExit):  # the classifier's class count must be the folder's
        run_cli("fit", "--config", str(EXPERIMENTS / "classifier_folder.yaml"), *folder, "--data.test_size=4",
                "--model.init_args.network.init_args.num_classes=3")
    assert "has 2 classes: set model.network.init_args.num_classes to 2" in capsys.readouterr().err
    run_cli("fit", "--config", str(EXPERIMENTS / "classifier_folder.yaml"), *folder, "--data.test_size=4",
            "--trainer.max_epochs=1", "--model.init_args.network.init_args.hidden=16")  # FD: fewer features than images
    callbacks = tmp_path / "metrics.yaml"
    callbacks.write_text(FOLDER_METRICS)
    run_cli("fit", "--config", str(EXPERIMENTS / "cgan_folder.yaml"), *folder, "--config", str(callbacks),
            "--model.init_args.generator.init_args.base_channels=8",
            "--model.init_args.discriminator.init_args.base_channels=8", "--trainer.max_steps=4")
    record = json.loads((tmp_path / "lightning_logs" / "cgan_folder" / "version_0" / "metrics.jsonl")
                        .read_text().splitlines()[-1])
    assert ({"classifier/label_accuracy", "classifier/label_accuracy_worst_class", "classifier/fd"}
            <= set(record["scores"]))
    assert record["data"]["class_names"] == ["cats", "dogs"] and record["data"]["train"] == 36  # 40 - 4 held out
    assert record["data"]["skipped_files"] == 0 and record["data"]["data_module"] == "ImageFolderDataModule"


@pytest.mark.shared_data
def test_the_real_emojione_folder_gives_the_references_2827_images(shared_datasets):
    data = EmojiDataModule(data_dir=str(shared_datasets), download=False)
    data.setup()
    assert data.split("train").samples.shape == (2827, 3, 32, 32)
