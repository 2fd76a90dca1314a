"""Data modules on tiny generated idx/PNG data: shapes, ranges, splits, labels, determinism, errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data import (
    EmojiDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    QuadraticDataModule,
    TensorLoader,
)
from genlab.data.idx import read_idx
from genlab.errors import GenlabError
from tests.helpers import write_idx, write_tiny_mnist


def test_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-idx3-ubyte", array)
    assert torch.equal(read_idx(tmp_path / "x-idx3-ubyte"), torch.from_numpy(array))


def test_truncated_idx_file_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(GenlabError, match=r"train-images-idx3-ubyte holds 3,052 bytes but its header promises 3,152"):
        read_idx(path)


@pytest.mark.parametrize("module_class, folder", [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")])
def test_mnist_style_splits_shapes_and_range(tmp_path, module_class, folder):
    root = write_tiny_mnist(tmp_path, folder, train=100, test=30)
    data = module_class(data_dir=str(root), batch_size=16, val_size=20, download=False)
    data.prepare_data()
    data.setup("fit")
    train, val, test = data.splits
    assert (len(train.labels), len(val.labels), len(test.labels)) == (80, 20, 30)
    assert train.samples.shape == (80, 1, 28, 28) and train.samples.dtype == torch.float32
    assert train.samples.min() >= -1 and train.samples.max() <= 1
    raw = read_idx(root / folder / "raw" / "train-images-idx3-ubyte")
    # pixel 0 maps to -1 and 255 to +1, linearly
    assert torch.allclose(torch.sort(torch.cat([train.samples, val.samples]).flatten())[0],
                          torch.sort(raw.flatten().float() / 127.5 - 1)[0])
    # train and val partition the training file: every label appears exactly as often as in the file
    labels = torch.cat([train.labels, val.labels])
    assert torch.equal(torch.bincount(labels, minlength=10), torch.bincount(torch.arange(100) % 10, minlength=10))
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (16, 1, 28, 28) and labels.shape == (16,) and labels.dtype == torch.long
    assert len(data.train_dataloader()) == 80 // 16 and len(data.test_dataloader()) == 2


def test_validation_split_is_seeded(tmp_path):
    root = write_tiny_mnist(tmp_path)
    first, second, other = (MNISTDataModule(str(root), val_size=10, seed=s, download=False) for s in (0, 0, 1))
    for data in (first, second, other):
        data.setup()
    assert torch.equal(first.splits.val.samples, second.splits.val.samples)
    assert not torch.equal(first.splits.val.samples, other.splits.val.samples)


def test_missing_mnist_names_the_folder_and_the_fix(tmp_path):
    data = MNISTDataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(GenlabError) as error:
        data.prepare_data()
    message = str(error.value)
    assert "\n" not in message
    assert str((tmp_path / "nowhere" / "MNIST" / "raw").resolve()) in message
    assert "--data.data_dir" in message and "GENLAB_DATA_DIR" in message


def test_data_dir_defaults_to_environment_then_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert MNISTDataModule().raw_dir == Path("data/MNIST/raw")
    monkeypatch.setenv("GENLAB_DATA_DIR", str(tmp_path / "elsewhere"))
    assert MNISTDataModule().raw_dir == tmp_path / "elsewhere" / "MNIST" / "raw"
    assert MNISTDataModule(data_dir="explicit").raw_dir == Path("explicit/MNIST/raw")


def test_emoji_composites_alpha_onto_the_background(tmp_path):
    folder = tmp_path / "EmojiOne" / "png" / "32"
    folder.mkdir(parents=True)
    pixels = np.zeros((32, 32, 4), dtype=np.uint8)
    pixels[:16, :, :] = (255, 0, 0, 255)  # opaque red top half; transparent bottom half
    Image.fromarray(pixels, "RGBA").save(folder / "a.png")
    Image.fromarray(pixels, "RGBA").resize((64, 64)).save(folder / "b.png")  # resized to 32
    data = EmojiDataModule(data_dir=str(tmp_path), background=(0, 0, 255), batch_size=2)
    data.setup()
    images = data.splits.train.samples
    assert images.shape == (2, 3, 32, 32) and data.data_shape == (3, 32, 32)
    assert torch.equal(images[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))  # red
    assert torch.equal(images[0, :, 31, 0], torch.tensor([-1.0, -1.0, 1.0]))  # blue background
    assert torch.equal(data.splits.train.labels, torch.zeros(2, dtype=torch.long))


def test_emoji_errors_name_the_folder_and_the_file(tmp_path):
    with pytest.raises(GenlabError, match="does not exist: put the EmojiOne 32x32 PNGs there"):
        EmojiDataModule(data_dir=str(tmp_path), download=False).prepare_data()
    folder = tmp_path / "EmojiOne" / "png" / "32"
    folder.mkdir(parents=True)
    with pytest.raises(GenlabError, match="has no .png files"):
        EmojiDataModule(data_dir=str(tmp_path), download=False).prepare_data()
    Image.new("RGBA", (32, 32)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(GenlabError, match=r"cannot read image .*broken.png.*on_bad_file: skip"):
        EmojiDataModule(data_dir=str(tmp_path)).setup()
    data = EmojiDataModule(data_dir=str(tmp_path), on_bad_file="skip", batch_size=1)
    with pytest.warns(UserWarning, match="broken.png"):
        data.setup()
    assert len(data.splits.train.labels) == 1


def test_quadratic_points_lie_on_the_curve_and_are_seeded():
    data = QuadraticDataModule(train_size=500, val_size=50, test_size=50, a=2.0, b=-0.5, x_range=1.5, seed=3)
    data.setup()
    points = data.splits.train.samples
    assert points.shape == (500, 2) and data.data_shape == (2,)
    assert torch.allclose(points[:, 1], 2.0 * points[:, 0] ** 2 - 0.5)
    assert points[:, 0].abs().max() <= 1.5
    again = QuadraticDataModule(train_size=500, val_size=50, test_size=50, a=2.0, b=-0.5, x_range=1.5, seed=3)
    again.setup()
    assert torch.equal(points, again.splits.train.samples)
    noisy = QuadraticDataModule(train_size=4000, noise=0.1, seed=0)
    noisy.setup()
    residual = noisy.splits.train.samples[:, 1] - noisy.splits.train.samples[:, 0] ** 2
    assert residual.std().item() == pytest.approx(0.1, rel=0.1)


def test_loader_order_depends_only_on_seed_and_epoch():
    values = torch.arange(20)
    loader = TensorLoader((values,), batch_size=4, shuffle=True, seed=7)
    loader.sampler.set_epoch(2)
    epoch_two = torch.cat([b for (b,) in loader])
    assert sorted(epoch_two.tolist()) == list(range(20))
    other = TensorLoader((values,), batch_size=4, shuffle=True, seed=7)
    other.sampler.set_epoch(2)
    assert torch.equal(torch.cat([b for (b,) in other]), epoch_two)
    other.sampler.set_epoch(3)
    assert not torch.equal(torch.cat([b for (b,) in other]), epoch_two)


def test_loader_resumes_mid_epoch_from_its_state():
    values = torch.arange(20)
    loader = TensorLoader((values,), batch_size=4, shuffle=True, seed=1)
    loader.sampler.set_epoch(5)
    iterator = iter(loader)
    seen = [next(iterator)[0] for _ in range(2)]
    state = loader.state_dict()
    assert state == {"epoch": 5, "batches": 2}
    resumed = TensorLoader((values,), batch_size=4, shuffle=True, seed=1)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(5)
    rest = [b for (b,) in resumed]
    assert len(rest) == 3
    full = TensorLoader((values,), batch_size=4, shuffle=True, seed=1)
    full.sampler.set_epoch(5)
    assert torch.equal(torch.cat(seen + rest), torch.cat([b for (b,) in full]))


def test_loader_drop_last_and_rank_shards():
    loader = TensorLoader((torch.arange(10),), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [b.tolist() for (b,) in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    shards = [loader.sampler.indices(rank, 3) for rank in range(3)]
    assert all(len(s) == 4 for s in shards)  # 10 padded to 12 by wrapping
    assert set(torch.cat(shards).tolist()) == set(range(10))
