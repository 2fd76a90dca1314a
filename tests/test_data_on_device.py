"""The training split lives on the training device: batches sliced there, in the host's order, with nothing per
batch going through the host, resumable mid-epoch, images held as bytes that index as the very same floats.

No GPU here: a trainer stub whose device is "meta" stands in for one (meta tensors index like any other, without
values), and a dispatch mode records every copy between devices and every read of a value on the host.
"""

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from genlab.data import EmojiDataModule, MNISTDataModule, QuadraticDataModule, TensorLoader
from genlab.data.loader import EpochOrder
from genlab.data.pixels import ByteImages
from tests.helpers import write_tiny_emoji, write_tiny_mnist

META = torch.device("meta")
aten = torch.ops.aten


class HostTraffic(TorchDispatchMode):
    """Copies between devices (the source of each, kept) and reads of a tensor's value on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.moved: list[torch.Tensor] = []
        self.reads = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is aten._to_copy.default and torch.device(kwargs.get("device") or args[0].device) != args[0].device:
            self.moved.append(args[0].clone())
        elif func is aten.copy_.default and args[0].device != args[1].device:
            self.moved.append(args[1].clone())
        elif func is aten._local_scalar_dense.default:
            self.reads += 1
        return func(*args, **kwargs)


def on_device(data: Any, device: torch.device = META) -> Any:
    data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=device))
    return data


@pytest.fixture()
def mnist(tmp_path):
    data = MNISTDataModule(str(write_tiny_mnist(tmp_path, train=100, test=30)), batch_size=16, val_size=20,
                           download=False)
    data.setup()
    return data


def epoch_order(data: MNISTDataModule, epoch: int) -> torch.Tensor:
    order = EpochOrder(len(data.splits.train.labels), shuffle=True, seed=data.seed)
    order.set_epoch(epoch)
    return order.indices(0, 1)


def test_training_batches_are_sliced_on_the_trainers_device_while_the_splits_stay_on_the_cpu(mnist):
    loader = on_device(mnist).train_dataloader()
    batches = list(loader)
    assert loader.device == META and len(batches) == len(loader) == 80 // 16
    for images, labels in batches:
        assert images.device == META and images.shape == (16, 1, 28, 28) and images.dtype == torch.float32
        assert labels.device == META and labels.shape == (16,) and labels.dtype == torch.long
    # what callbacks, models and doctor read, and the evaluation loaders, stay on the host
    assert all(mnist.split(name).samples.device.type == "cpu" for name in ("train", "val", "test"))
    assert all(next(iter(make()))[0].device.type == "cpu"
               for make in (mnist.val_dataloader, mnist.test_dataloader, mnist.predict_dataloader))
    assert on_device(mnist).train_dataloader().tensors is loader.tensors  # moved once, not per loader


def test_without_a_trainer_the_training_loader_serves_the_cpu_split_itself(mnist):
    assert mnist.train_dataloader().tensors[0] is mnist.splits.train.samples
    assert on_device(mnist, torch.device("cpu")).train_dataloader().tensors[0] is mnist.splits.train.samples


def test_the_host_order_moves_once_per_epoch_and_no_batch_goes_through_the_host(mnist):
    loader = on_device(mnist).train_dataloader()
    for epoch in (0, 3):
        loader.sampler.set_epoch(epoch)
        iterator = iter(loader)
        with HostTraffic() as first:
            next(iterator)
        with HostTraffic() as rest:
            remaining = list(iterator)
        assert len(first.moved) == 1 and torch.equal(first.moved[0], epoch_order(mnist, epoch))
        assert first.reads == 0
        assert len(remaining) == 4 and rest.moved == [] and rest.reads == 0


def test_resume_mid_epoch_on_the_device_serves_exactly_the_remaining_batches(mnist, tmp_path):
    loader = on_device(mnist).train_dataloader()
    loader.sampler.set_epoch(2)
    iterator = iter(loader)
    seen = [next(iterator) for _ in range(2)]
    assert loader.state_dict() == {"epoch": 2, "batches": 2}
    again = MNISTDataModule(str(tmp_path), batch_size=16, val_size=20, download=False)
    resumed = on_device(again).train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    resumed.sampler.set_epoch(2)
    with HostTraffic() as traffic:
        rest = list(resumed)
    assert len(seen) + len(rest) == 5 and all(images.device == META for images, _ in rest)
    assert len(traffic.moved) == 1 and torch.equal(traffic.moved[0], epoch_order(mnist, 2))
    # the values: the same loader over the device's form of the split (bytes), on the CPU
    rows = (ByteImages.encode(mnist.splits.train.samples), mnist.splits.train.labels)
    first, second, full = (TensorLoader(rows, 16, shuffle=True, drop_last=True, seed=mnist.seed) for _ in range(3))
    first.sampler.set_epoch(2)
    batches = iter(first)
    head = [next(batches)[0] for _ in range(2)]
    second.load_state_dict(first.state_dict())
    second.sampler.set_epoch(2)
    full.sampler.set_epoch(2)
    assert torch.equal(torch.cat(head + [images for images, _ in second]), torch.cat([images for images, _ in full]))


def test_images_on_the_device_are_bytes_that_index_as_the_float_split_bit_for_bit(mnist):
    samples, labels = mnist.splits.train
    stored = on_device(mnist).train_dataloader().tensors[0]
    assert isinstance(stored, ByteImages) and stored.codes.dtype == torch.uint8 and stored.device == META
    assert stored.nbytes == samples.nbytes // 4 + 256 * 4
    as_bytes, as_floats = (TensorLoader((rows, labels), 16, shuffle=True, seed=5) for rows in
                           (ByteImages.encode(samples), samples))
    for epoch in (0, 1):
        as_bytes.sampler.set_epoch(epoch)
        as_floats.sampler.set_epoch(epoch)
        for (left, left_labels), (right, right_labels) in zip(as_bytes, as_floats, strict=True):
            assert torch.equal(left.view(torch.int32), right.view(torch.int32))
            assert torch.equal(left_labels, right_labels)


def test_samples_that_are_not_exactly_bytes_go_to_the_device_as_floats(tmp_path):
    images = torch.arange(256, dtype=torch.float32).div(127.5).sub(1.0).reshape(1, 1, 16, 16)
    assert ByteImages.encode(images) is not None
    for not_a_byte in (torch.nextafter(images[0, 0, 3, 3], torch.tensor(2.0)), torch.tensor(1.5),
                       torch.tensor(float("nan"))):
        changed = images.clone()
        changed[0, 0, 3, 3] = not_a_byte
        assert ByteImages.encode(changed) is None
    toy = on_device(QuadraticDataModule(train_size=64, batch_size=8))
    points = toy.train_dataloader().tensors[0]
    assert isinstance(points, torch.Tensor) and points.device == META and points.dtype == torch.float32
    write_tiny_emoji(tmp_path / "EmojiOne" / "png" / "32", count=8)
    emoji = on_device(EmojiDataModule(str(tmp_path), batch_size=4, download=False))
    assert isinstance(emoji.train_dataloader().tensors[0], ByteImages)


def test_a_loader_refuses_tensors_on_different_devices():
    with pytest.raises(ValueError, match="same device"):
        TensorLoader((torch.zeros(4), torch.zeros(4, device=META)), batch_size=2)
