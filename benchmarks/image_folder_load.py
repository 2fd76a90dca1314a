"""Load time of an image folder: the first start (decode, crop, resize) against the second (genlab's image cache).

    python benchmarks/image_folder_load.py                       # 5,000 synthetic 256x192 JPEGs, made in /tmp
    python benchmarks/image_folder_load.py --folder PATH         # your own folder (read only)

Prints the machine, the folder, and the seconds of each start, side by side in one run; the cache lives in a
temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.data import ImageFolderDataModule


def synthetic_folder(root: Path, count: int, size: tuple[int, int]) -> Path:
    """`count` JPEG photos-like images (smooth random colour fields), in two class sub-folders."""
    rng = np.random.default_rng(0)
    for index in range(count):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR)
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:05d}.jpg", quality=90)
    return root


def timed_start(folder: Path, image_size: int) -> tuple[float, int]:
    start = time.perf_counter()
    data = ImageFolderDataModule(str(folder), image_size=image_size, batch_size=1)
    data.setup()
    return time.perf_counter() - start, len(data.split("train").labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="an image folder (default: synthetic JPEGs)")
    parser.add_argument("--count", type=int, default=5000, help="synthetic images (default 5000)")
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores,"
          f" torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["GENLAB_CACHE_DIR"] = str(Path(scratch) / "cache")
        folder = args.folder or synthetic_folder(Path(scratch) / "images", args.count, (256, 192))
        cold, count = timed_start(folder, args.image_size)
        cached, _ = timed_start(folder, args.image_size)
    source = "your folder" if args.folder else "synthetic 256x192 JPEGs"
    print(f"{count:,} images ({source}) → 3x{args.image_size}x{args.image_size}: first start {cold:.2f} s, with the"
          f" cache {cached:.2f} s ({cold / cached:.0f}x)")


if __name__ == "__main__":
    main()
