"""CIFAR-10 read from files written in its own format (Python-2 pickles of N x 3072 bytes), offline, safely."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from genlab.data import CIFAR10DataModule
from genlab.errors import GenlabError
from tests.helpers import write_cifar


def test_images_are_the_files_bytes_as_rgb_planes_in_the_symmetric_range(tmp_path):
    written = write_cifar(tmp_path)
    data = CIFAR10DataModule(data_dir=str(tmp_path), batch_size=2, download=False)
    data.prepare_data()
    data.setup()
    train, test = data.split("train"), data.split("test")
    assert train.samples.shape == (30, 3, 32, 32) and test.samples.shape == (4, 3, 32, 32)
    first = written["data_batch_1"][0]
    red_top_left, green_top_left, blue_last = first[0], first[1024], first[3071]  # row-major planes R, G, B
    assert train.samples[0, 0, 0, 0] == pytest.approx(red_top_left / 127.5 - 1)
    assert train.samples[0, 1, 0, 0] == pytest.approx(green_top_left / 127.5 - 1)
    assert train.samples[0, 2, 31, 31] == pytest.approx(blue_last / 127.5 - 1)
    assert torch.equal(data.split("val").samples, train.samples)  # val_size 0: the training images
    assert data.class_names[0] == "airplane" and data.class_names[9] == "truck" and data.num_classes == 10


def test_a_missing_file_and_an_offline_download_are_one_line_naming_the_layout(tmp_path, monkeypatch):
    write_cifar(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(GenlabError, match=r"missing test_batch; download is off\): point --data.data_dir"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).prepare_data()

    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(GenlabError, match="download failed: <urlopen error") as error:
        CIFAR10DataModule(data_dir=str(tmp_path)).prepare_data()
    assert "\n" not in str(error.value)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_batch_file_that_would_run_code_is_refused_not_executed(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as file:
        pickle.dump({"data": Payload(), "labels": []}, file, protocol=2)
    with pytest.raises(GenlabError, match=r"data_batch_3 is not a CIFAR-10 batch file \(.*system.*replace it"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).setup()


def test_a_batch_of_the_wrong_shape_is_one_line(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as file:
        pickle.dump({"data": np.zeros((2, 100), dtype=np.uint8), "labels": [0, 1]}, file, protocol=2)
    with pytest.raises(GenlabError, match=r"test_batch holds data of shape \(2, 100\) and 2 labels"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).setup()
