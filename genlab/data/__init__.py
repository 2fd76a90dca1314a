"""`LightningDataModule`s: MNIST, Fashion-MNIST, CIFAR-10, EmojiOne, a folder of one's own images and synthetic
quadratic points."""

from genlab.data.base import DATA_DIR_ENV, Split, Splits, TensorDataModule, resolve_data_dir
from genlab.data.cifar import CIFAR10DataModule
from genlab.data.corruption import Corruption, PatchNoise
from genlab.data.emoji import EmojiDataModule
from genlab.data.folder import ImageFolderDataModule
from genlab.data.loader import TensorLoader
from genlab.data.mnist import FashionMNISTDataModule, MNISTDataModule
from genlab.data.quadratic import QuadraticDataModule

__all__ = [
    "DATA_DIR_ENV",
    "CIFAR10DataModule",
    "Corruption",
    "EmojiDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "PatchNoise",
    "QuadraticDataModule",
    "Split",
    "Splits",
    "TensorDataModule",
    "TensorLoader",
    "resolve_data_dir",
]
