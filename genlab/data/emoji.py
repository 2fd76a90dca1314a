"""EmojiOne: a folder of RGBA PNGs composited onto a background colour, as RGB images in [-1, 1] (a preset of
`ImageFolderDataModule`), and the npm fetch that fills genlab's own data root with them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

from genlab.data.base import Splits, resolve_data_dir
from genlab.data.folder import ImageFolderDataModule, is_image
from genlab.errors import GenlabError

NPM_PACKAGE = "emojione-assets@4.5.0"
DEFAULT_FOLDER = "EmojiOne/png/32"  # under the data root: the only folder genlab fetches EmojiOne into


def fetch_emojione(target: Path, package: str = NPM_PACKAGE, size: int = 32) -> None:
    """Fill `target` with the package's `png/<size>` PNGs (and its LICENSE.md) through `npm pack`.

    The tarball is unpacked in a temporary folder beside `target` and moved into place at the end, so an
    interrupted fetch never leaves a half-filled folder that a later run would take for the data set.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise GenlabError(
            f"{target.resolve()} holds no PNGs and npm is not on PATH to fetch them: put the EmojiOne 32x32 PNGs"
            f" there (npm pack {package}, folder png/{size}) or point --data.data_dir / $GENLAB_DATA_DIR at a"
            " root holding EmojiOne/png/32"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-fetch-") as tmp:
        staging = Path(tmp)
        result = subprocess.run([npm, "pack", package], cwd=staging, capture_output=True, text=True, check=False)
        tarballs = sorted(staging.glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            reason = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "no tarball")
            raise GenlabError(
                f"npm pack {package} failed ({reason.strip()}): put the EmojiOne 32x32 PNGs in {target.resolve()}"
                " by hand, or point --data.data_dir / $GENLAB_DATA_DIR at a root holding EmojiOne/png/32"
            )
        images = staging / "png"
        extract_pngs(tarballs[0], f"package/png/{size}", images)
        if not any(images.glob("*.png")):
            raise GenlabError(f"the npm package {package} has no png/{size}/*.png: put the PNGs in {target.resolve()}")
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if target.exists():
            for path in images.iterdir():
                os.replace(path, target / path.name)
        else:
            images.rename(target)


def extract_pngs(tarball: Path, folder: str, into: Path) -> None:
    """The PNGs of `folder` in the tarball (and the package's LICENSE.md), flat into `into`: no path from the
    archive is trusted."""
    into.mkdir()
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            wanted = os.path.dirname(member.name) == folder and member.name.endswith(".png")
            if member.isfile() and (wanted or member.name == "package/LICENSE.md"):
                member.name = os.path.basename(member.name)
                archive.extract(member, into, filter="data")


class EmojiDataModule(ImageFolderDataModule):
    """EmojiOne emoji: `ImageFolderDataModule` preset to 3 x 32 x 32 RGB on white, which can fetch the images.

    EmojiOne has no official split: by default every image trains and the validation/test loaders serve
    the training images too, as the reference's FID against the training set does. `val_size` holds some out.

    Args:
        data_dir: data root; defaults to $GENLAB_DATA_DIR, else `data/`.
        folder: the PNG folder, relative to data_dir (or absolute).
        image_size: side length; images of another size are resized (Lanczos).
        background: RGB colour that transparent pixels are composited onto.
        on_bad_file: "error" stops on a PNG that cannot be read (naming it); "skip" warns and leaves it out.
        download: when the default folder (EmojiOne/png/32 under the data root) holds no PNGs, fetch them with
            `npm pack emojione-assets@4.5.0` (needs npm and a network; rank 0 only, as Lightning calls
            `prepare_data` there). A folder you name is never written to: for your own images use
            `genlab.data.ImageFolderDataModule`.
        cache: keep the decoded images in genlab's cache (`genlab.data.image_cache`).
        memory_limit_gb: refuse a folder whose images would take more memory than this (None: half the RAM).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        folder: str = DEFAULT_FOLDER,
        image_size: int = 32,
        background: tuple[int, int, int] = (255, 255, 255),
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 0,
        on_bad_file: Literal["error", "skip"] = "error",
        download: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        train_subset: int | None = None,
        cache: bool = True,
        memory_limit_gb: float | None = None,
    ) -> None:
        super().__init__(folder, data_dir=data_dir, image_size=image_size, channels=3, background=background,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, val_size=val_size,
                         on_bad_file=on_bad_file, drop_last=drop_last, seed=seed, train_subset=train_subset,
                         cache=cache, memory_limit_gb=memory_limit_gb)
        self.download = download
        self.fetches_into = resolve_data_dir(data_dir) / DEFAULT_FOLDER

    @property
    def image_folder(self) -> Path:
        return self.folder

    def _is_default_and_empty(self) -> bool:
        return self.folder == self.fetches_into and not any(self.folder.glob("*.png"))

    def prepare_data(self) -> None:
        if self.download and self._is_default_and_empty():
            fetch_emojione(self.folder)  # into genlab's own data root only: a folder of yours is never written
        self.check_folder()
        self.images()  # the one-line errors of a missing or empty folder, before training starts

    def _count_classes(self) -> int:
        return 0  # unlabelled, whatever sub-folders the folder holds

    def images(self) -> tuple[list[Path], list[int], list[str]]:
        """The PNGs directly in the folder, unlabelled: EmojiOne's `png/32` also holds sub-folders of variants
        (`_alt/`, …), which the reference leaves out (2,827 images)."""
        self.check_folder()
        files = sorted(path for path in self.folder.glob("*") if is_image(path) and path.suffix.lower() == ".png")
        if not files:
            state = "has no top-level .png files" if self.folder.is_dir() else "does not exist"
            raise GenlabError(f"{self.folder.resolve()} {state} (EmojiDataModule reads the PNGs directly in its"
                              " folder): for a folder of your own images, of any format or with class sub-folders,"
                              " use data.class_path: genlab.data.ImageFolderDataModule")
        return files, [0] * len(files), []

    def check_folder(self) -> None:
        """The EmojiOne-specific line for genlab's own, empty, folder (others get the image-folder errors)."""
        if self._is_default_and_empty():
            state = "has no .png files" if self.folder.is_dir() else "does not exist"
            raise GenlabError(
                f"{self.folder.resolve()} {state}: put the EmojiOne 32x32 PNGs there (npm pack"
                " emojione-assets@4.5.0, folder png/32) or point --data.data_dir / $GENLAB_DATA_DIR at a root"
                " holding EmojiOne/png/32"
            )

    def load_splits(self) -> Splits:
        self.check_folder()
        return super().load_splits()
