"""`ImageFolderDataModule`: a folder of one's own images, read once into memory and never written to.

The shape users expect from torchvision's `ImageFolder`: either all images directly in the folder (unlabelled,
label 0), or one sub-folder per class (labels 0..C-1 in the sorted order of the sub-folders' names, recorded in
`class_names`). Files are found by extension in any case: PNG, JPEG, WebP, BMP, GIF (first frame), TIFF.

Every image becomes `channels` x `image_size` x `image_size` in [-1, 1]:
- transparency (RGBA, LA, palette images with a transparent colour) is composited onto `background`;
- colour is converted to `channels` (3: RGB; 1: luminance, ITU-R 601);
- size: the largest centred square is cropped, then resized to `image_size` with Lanczos (a square image is only
  resized; an image already of that size is left as it is).

Nothing is written into the folder: no index, no download. The decoded images are kept in genlab's own cache
(`genlab.data.image_cache`, keyed by the files' names, sizes and times and the conversion settings), so the second
start reads one file instead of decoding every image. Before decoding, the memory the images will take is
printed, and a folder that would take more than `memory_limit_gb` is refused in one line.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image, UnidentifiedImageError

from genlab.data import image_cache
from genlab.data.base import (
    Split,
    Splits,
    TensorDataModule,
    bytes_to_symmetric_range,
    resolve_data_dir,
    split_off,
)
from genlab.errors import GenlabError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """(files, labels, class names): the images directly in `folder` (one class, no name), or those of each of its
    sub-folders (one class each). One line when the folder is missing, holds no image, or mixes both layouts."""
    if not folder.is_dir():
        raise GenlabError(f"image folder {folder} does not exist: set data.folder to a folder of images (absolute,"
                          " or relative to the data root)")
    top = sorted(path for path in folder.iterdir() if is_image(path))
    classes = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    per_class = {path.name: sorted(file for file in path.rglob("*") if is_image(file)) for path in classes}
    per_class = {name: files for name, files in per_class.items() if files}
    if top and per_class:
        raise GenlabError(f"{folder} mixes images at its top ({top[0].name}, …) with class sub-folders"
                          f" ({', '.join(list(per_class)[:3])}): put every image in a class sub-folder,"
                          " or all at the top")
    if top:
        return top, [0] * len(top), []
    if not per_class:
        raise GenlabError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)} in any case): put images there,"
                          " directly or in one sub-folder per class")
    names = list(per_class)
    if len(names) == 1:  # one sub-folder: an unlabelled set that happens to sit one level down
        return per_class[names[0]], [0] * len(per_class[names[0]]), []
    files = [file for name in names for file in per_class[name]]
    labels = [index for index, name in enumerate(names) for _ in per_class[name]]
    return files, labels, names


def load_image(path: Path, image_size: int, channels: int, background: tuple[int, int, int]) -> np.ndarray:
    """One image as uint8 H x W x channels, by the rules of the module docstring."""
    with Image.open(path) as image:
        image.seek(0)
        image.load()
        rgba = image.convert("RGBA")
    side = min(rgba.size)
    if rgba.size[0] != rgba.size[1]:
        left, top = (rgba.size[0] - side) // 2, (rgba.size[1] - side) // 2
        rgba = rgba.crop((left, top, left + side, top + side))
    if side != image_size:
        rgba = rgba.resize((image_size, image_size), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    composited = Image.alpha_composite(canvas, rgba)
    pixels = np.asarray(composited.convert("L" if channels == 1 else "RGB"))
    return pixels[:, :, None] if channels == 1 else pixels


def read_images(files: list[Path], load: Callable[[Path], np.ndarray],
                on_bad_file: str) -> tuple[list[np.ndarray], list[int]]:
    """`load` of every file, with the indices of the files read: an unreadable or truncated file stops the run with
    one line naming it, or, with `on_bad_file` "skip", is left out with a warning."""
    images, kept = [], []
    for index, path in enumerate(files):
        try:
            images.append(load(path))
            kept.append(index)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            if on_bad_file == "error":
                raise GenlabError(f"cannot read image {path} ({error}): remove or replace it, or set"
                                  " data.on_bad_file: skip") from None
            warnings.warn(f"skipping unreadable image {path}: {error}", stacklevel=3)
    return images, kept


class ImageFolderDataModule(TensorDataModule):
    """A folder of images (see the module docstring for the layout and the conversion rules), held in memory.

    Args:
        folder: the image folder, absolute or relative to `data_dir`.
        data_dir: data root; defaults to $GENLAB_DATA_DIR, else `data/`.
        image_size: side length of the square images.
        channels: 3 (RGB) or 1 (grey).
        background: RGB colour transparent pixels are composited onto.
        val_size, test_size: images held out (seeded by `seed`) for validation and for `genlab test`; with 0 the
            training images serve there too (as FID against the training set does).
        on_bad_file: "error" stops on an unreadable or truncated file, naming it; "skip" leaves it out, warns and
            counts it (`skipped_files`).
        cache: keep the decoded images in genlab's cache (not in the folder) for the next start.
        memory_limit_gb: refuse a folder whose images would take more memory than this, as float32 (None: half
            of this machine's RAM).
    """

    def __init__(
        self,
        folder: str,
        data_dir: str | None = None,
        image_size: int = 32,
        channels: Literal[1, 3] = 3,
        background: tuple[int, int, int] = (255, 255, 255),
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 0,
        test_size: int = 0,
        on_bad_file: Literal["error", "skip"] = "error",
        drop_last: bool = True,
        seed: int = 0,
        train_subset: int | None = None,
        cache: bool = True,
        memory_limit_gb: float | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, drop_last=drop_last, seed=seed,
                         train_subset=train_subset)
        if channels not in (1, 3):
            raise GenlabError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise GenlabError(f"data.image_size must be at least 1, got {image_size}")
        if on_bad_file not in ("error", "skip"):
            raise GenlabError(f"data.on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        self.folder = Path(folder).expanduser()
        if not self.folder.is_absolute():
            self.folder = resolve_data_dir(data_dir) / self.folder
        self.image_size, self.channels, self.background = image_size, channels, tuple(background)
        self.val_size, self.test_size, self.on_bad_file = val_size, test_size, on_bad_file
        self.cache, self.memory_limit_gb = cache, memory_limit_gb
        self.data_shape = (channels, image_size, image_size)
        self.class_names: list[str] = []
        self.skipped_files: list[str] = []
        self.num_classes = self._count_classes()

    def describe(self) -> dict[str, object]:
        """The split sizes, and the folder, its classes and the files left out as unreadable."""
        return {**super().describe(), "folder": str(self.folder), "class_names": self.class_names,
                "image_size": self.image_size, "channels": self.channels, "skipped_files": len(self.skipped_files)}

    def images(self) -> tuple[list[Path], list[int], list[str]]:
        """(files, labels, class names) of the folder's layout (`find_images`); a preset may read another."""
        return find_images(self.folder)

    def _count_classes(self) -> int:
        """Known before loading (models check `num_classes` at setup): 0 without class sub-folders."""
        try:
            _, _, names = self.images()
        except GenlabError:
            return 0  # the same error is raised, in one line, when the data are loaded
        return len(names)

    def _conversion(self) -> dict[str, object]:
        return {"image_size": self.image_size, "channels": self.channels, "background": list(self.background),
                "on_bad_file": self.on_bad_file}

    def _check_memory(self, count: int) -> int:
        """The bytes `count` images take as float32; one line when that is above the limit."""
        needed = count * self.channels * self.image_size**2 * 4
        limit = self.memory_limit_gb * 1e9 if self.memory_limit_gb is not None else None
        if limit is None and (physical := image_cache.physical_memory()) is not None:
            limit = physical / 2
        if limit is not None and needed > limit:
            raise GenlabError(
                f"{count:,} images of {self.folder} at {self.channels}x{self.image_size}x{self.image_size} take"
                f" {needed / 1e9:.2f} GB as float32, above the limit of {limit / 1e9:.2f} GB: lower data.image_size,"
                " or raise data.memory_limit_gb"
            )
        return needed

    def _decode(self, files: list[Path], labels: list[int]) -> image_cache.DecodedFolder:
        images, kept = read_images(
            files, lambda path: load_image(path, self.image_size, self.channels, self.background), self.on_bad_file)
        if not images:
            raise GenlabError(f"no readable image in {self.folder}: replace the files")
        read = set(kept)
        skipped = [str(path) for index, path in enumerate(files) if index not in read]
        return image_cache.DecodedFolder(np.stack(images), np.array([labels[index] for index in kept]), skipped)

    def _read(self, files: list[Path], labels: list[int]) -> Split:
        """Every image, from genlab's cache when this folder was decoded before with the same settings."""
        needed, start = self._check_memory(len(files)), time.perf_counter()
        key = image_cache.folder_key(self.folder, files, self._conversion()) if self.cache else None
        decoded = image_cache.load(key) if key else None
        source = "read from genlab's image cache"
        if decoded is None:
            decoded, source = self._decode(files, labels), "decoded"
            if key:
                image_cache.store(key, decoded)
        self.skipped_files = decoded.skipped
        skipped = f"; {len(decoded.skipped)} unreadable file(s) skipped" if decoded.skipped else ""
        rank_zero_info(f"genlab: {len(decoded.labels):,} images of {self.folder} {source} in"
                       f" {time.perf_counter() - start:.1f} s ({self.channels}x{self.image_size}x{self.image_size},"
                       f" {needed / 1e6:,.1f} MB in memory as float32{skipped})")
        pixels = torch.from_numpy(decoded.pixels).permute(0, 3, 1, 2).contiguous()
        return Split(bytes_to_symmetric_range(pixels), torch.from_numpy(decoded.labels).long())

    def load_splits(self) -> Splits:
        files, labels, self.class_names = self.images()
        everything = self._read(files, labels)
        held_out = self.val_size + self.test_size
        if held_out >= len(everything.labels):  # split_off would name only val_size, and call all images training ones
            raise GenlabError(f"data.val_size {self.val_size} + data.test_size {self.test_size} hold out {held_out}"
                              f" images, but {self.folder} has {len(everything.labels)}: lower them (about a tenth"
                              " of the folder each is usual)")
        if held_out == 0:
            train, val, test = everything, everything, everything
        else:
            train, rest = split_off(everything, held_out, self.seed)
            val = Split(*(t[: self.val_size] for t in rest)) if self.val_size else train
            test = Split(*(t[self.val_size:] for t in rest)) if self.test_size else val
        if len(train.labels) < self.batch_size and self.drop_last:
            raise GenlabError(f"{self.folder} gives {len(train.labels)} training images, fewer than one batch of"
                              f" {self.batch_size}: lower data.batch_size or add images")
        return Splits(train, val, test)
