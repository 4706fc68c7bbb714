"""Readers: bring images from disk or from scikit-image into memory, decoded once.

CIFAR-10 and STL-10 binary archives, folders of JPEG/PNG files, and the images shipped inside
scikit-image (natural scenes and the LFW face subset). Nothing is downloaded. Drawing batches
from what these return is :mod:`models.data`'s job.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..extras import require

BUNDLED = 'data.source = "bundled" (the images shipped with scikit-image)'

__all__ = [
    "CIFAR10_URL",
    "DECODE_ERRORS",
    "IMAGE_SUFFIXES",
    "NATURAL_IMAGES",
    "STL10_URL",
    "decode_image",
    "find_images",
    "load_image",
    "load_lfw",
    "load_natural_images",
    "read_cifar10",
    "read_stl10",
    "resize_shorter",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
STL10_URL = "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Images shipped inside scikit-image that show no human face: astronaut and camera (the
# cameraman) do, horse is a binary silhouette, logo and colorwheel are synthetic.
NATURAL_IMAGES = (
    "brick", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "retina", "rocket", "stereo_motorcycle", "text",
)


def _check_split(split: str, accepted: tuple[str, ...]) -> None:
    if split not in accepted:
        raise ValueError(f"expected split one of {', '.join(accepted)}, got {split!r}")


def _read_records(file: Path, record: int, archive: str, url: str) -> np.ndarray:
    """The bytes of ``file`` as (N, record) uint8 rows; clear errors for a missing or cut file."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: download {url} and extract it, then pass the "
                                f"{archive} directory it contains")
    found = file.stat().st_size
    if found % record:
        raise ValueError(f"{file}: expected a size that is a multiple of the record size {record} bytes, "
                         f"got {found} bytes")
    return np.fromfile(file, dtype=np.uint8).reshape(-1, record)  # (N, record)


def read_cifar10(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read the CIFAR-10 binary version.

    Parameters
    ----------
    path : str or Path
        The ``cifar-10-batches-bin`` directory of ``cifar-10-binary.tar.gz``.
    split : {"train", "test"}
        ``data_batch_1.bin`` to ``data_batch_5.bin`` (50000 images), or ``test_batch.bin`` (10000).

    Returns
    -------
    images : (N, 32, 32, 3) uint8
        Rows, columns, RGB.
    labels : (N,) int64
        Classes 0 to 9.
    """
    names = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    _check_split(split, tuple(names))
    # Each record: one label byte, then the R, G and B planes of 32 x 32 row-major bytes.
    records = np.concatenate([_read_records(Path(path) / name, 1 + 3 * 32 * 32, "cifar-10-batches-bin",
                                            CIFAR10_URL) for name in names[split]])  # (N, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def read_stl10(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray | None]:
    """Read the STL-10 binary version.

    Parameters
    ----------
    path : str or Path
        The ``stl10_binary`` directory of ``stl10_binary.tar.gz``.
    split : {"train", "test", "unlabeled"}
        ``train_X.bin`` (5000 images), ``test_X.bin`` (8000) or ``unlabeled_X.bin`` (100000).

    Returns
    -------
    images : (N, 96, 96, 3) uint8
        Rows, columns, RGB.
    labels : (N,) int64 or None
        Classes 0 to 9 (the files store 1 to 10); None for the unlabeled split.
    """
    _check_split(split, ("train", "test", "unlabeled"))
    root = Path(path)
    # Each image: the R, G and B planes of 96 x 96 bytes, each plane stored column by column.
    raw = _read_records(root / f"{split}_X.bin", 3 * 96 * 96, "stl10_binary", STL10_URL)  # (N, 27648)
    images = np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))  # (N, 96, 96, 3)
    if split == "unlabeled":
        return images, None
    file = root / f"{split}_y.bin"
    labels = _read_records(file, 1, "stl10_binary", STL10_URL)[:, 0]  # (N,)
    if len(labels) != len(images):
        raise ValueError(f"{file}: expected {len(images)} labels, one per image of {split}_X.bin, "
                         f"got {len(labels)}")
    if len(labels) and not 1 <= labels.min() <= labels.max() <= 10:
        raise ValueError(f"{file}: expected labels 1 to 10, got {labels.min()} to {labels.max()}")
    return images, labels.astype(np.int64) - 1


def find_images(root: str | Path) -> list[Path]:
    """Every .jpg, .jpeg and .png file (any case) under ``root``, recursively, sorted by
    relative path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found (expected a directory)")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"no images under {root}: looked for {', '.join(IMAGE_SUFFIXES)} files (any case)")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def resize_shorter(img: Image.Image, shorter: int, mode: str) -> np.ndarray:
    """A Pillow image converted to ``mode`` ("RGB" or "L") and resized (bicubic, aspect kept)
    so that its shorter side is ``shorter`` pixels: (h, w, C) uint8, C 3 for "RGB", 1 for "L"."""
    scale = shorter / min(img.size)
    target = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    img.draft(mode, target)  # JPEG: decode at a reduced scale no smaller than target
    resized = img.convert(mode).resize(target, Image.Resampling.BICUBIC)
    return np.asarray(resized).reshape(target[1], target[0], -1)  # (h, w, C)


def load_image(file: Path, shorter: int, mode: str) -> np.ndarray:
    """Decode ``file``, convert it to ``mode`` ("RGB" or "L") and resize it (bicubic, aspect
    kept) so that its shorter side is ``shorter`` pixels.

    Returns
    -------
    (h, w, C) uint8
        C is 3 for "RGB", 1 for "L".

    Raises
    ------
    ValueError
        The file cannot be decoded (the message names it).
    """
    try:
        return decode_image(file, shorter, mode)
    except DECODE_ERRORS as err:
        raise ValueError(f"cannot read image {file}: {err}") from err


DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)  # what a bad image raises


def decode_image(file: Path | BinaryIO, shorter: int, mode: str) -> np.ndarray:
    """:func:`load_image` of a path or an open binary file (a shard member's bytes), raising
    one of :data:`DECODE_ERRORS` as Pillow does (the caller names the image)."""
    with Image.open(file) as img:
        return resize_shorter(img, shorter, mode)


def load_natural_images(mode: str, max_side: int = 512) -> list[Image.Image]:
    """The :data:`NATURAL_IMAGES` of scikit-image (files shipped in the package, no download),
    converted to ``mode`` ("RGB" or "L"), longer side capped at ``max_side`` pixels."""
    data = require("skimage.data", BUNDLED)

    images = []
    for name in NATURAL_IMAGES:
        array = data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(data, name)()
        img = Image.fromarray(array).convert(mode)
        scale = max_side / max(img.size)
        if scale < 1:
            img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.Resampling.BICUBIC)
        images.append(img)
    return images


def load_lfw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's LFW subset: 100 grey faces and 100 non-face patches, each
    (100, 25, 25) float32 in [0, 1], in the package's order."""
    data = require("skimage.data", BUNDLED)

    subset = data.lfw_subset().astype(np.float32)  # (200, 25, 25)
    return subset[:100], subset[100:]
