"""Sources that stream from disk: image folders, decoded on demand from a cached file index.

Memory per process is the :class:`~models.data.index.FileIndex` (about the path length plus
16 bytes per file) and the images of the batch being drawn, whatever the number of files: a
10-million-image folder trains with the memory of a 10-image one. Each sample decodes one
file (JPEG at a reduced DCT scale when the sample is much smaller than the image).

Bad files: ``on_error="raise"`` (the default) stops at the first file that cannot be decoded,
naming it; ``on_error="skip"`` counts it in :attr:`StreamingSource.skipped`, never reads it
again, and draws another file for the sample from the sample's own generator, so the batch is
still a function of (seed, step, sample index) alone.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .index import FileIndex
from .readers import IMAGE_SUFFIXES, load_image
from .sources import ImageSource, centre_crop, normalise_images

__all__ = ["ImageFolder", "ON_ERROR", "StreamingSource"]

ON_ERROR = ("raise", "skip")
CROPS = ("random", "centre")
MAX_TRIES = 64  # files drawn for one sample before giving up (only with on_error="skip")


class StreamingSource(ImageSource):
    """A source of whole images decoded on demand, one per sample: random crops of ``size``
    (flipped left-right half of the time) or central crops, after a resize (aspect kept) that
    makes the image's shorter side ``ceil(1.15 * max(size))``.

    Subclasses say how many items there are (:meth:`__len__`), how to read item k
    (:meth:`read`, raising ValueError naming the file when it cannot) and which file holds it
    (:meth:`item_file`).
    """

    def __init__(self, size: Sequence[int], channels: int, seed: int, crop: str, on_error: str):
        if crop not in CROPS:
            raise ValueError(f"expected crop one of {', '.join(CROPS)}, got {crop!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"expected on_error one of {', '.join(ON_ERROR)}, got {on_error!r}")
        super().__init__(size, channels, seed)
        self.crop = crop
        self.on_error = on_error
        self.shorter = math.ceil(1.15 * max(size))
        self.mode = "RGB" if channels == 3 else "L"
        self.skipped: set[str] = set()  # files found unreadable (on_error="skip")
        self._bad_items: set[int] = set()

    def listing(self) -> dict[str, Any]:
        """What another process needs to build this source without listing the folder again
        (keyword arguments of the constructor; picklable)."""
        return {"index": self.index}

    @abstractmethod
    def read(self, k: int) -> np.ndarray:
        """Item k, resized so its shorter side is :attr:`shorter`: (h, w, C) uint8."""

    @abstractmethod
    def item_file(self, k: int) -> str:
        """The file that holds item k (for messages)."""

    def _sample(self, rng: np.random.Generator) -> np.ndarray:
        for _ in range(MAX_TRIES):
            k = int(rng.integers(len(self)))
            if k in self._bad_items:
                continue
            try:
                image = self.read(k)  # (h, w, C)
            except ValueError:
                if self.on_error == "raise":
                    raise
                self._bad_items.add(k)
                self.skipped.add(self.item_file(k))
                continue
            return self._crop(image, rng)
        raise ValueError(f"{self.describe()}: no readable file among {MAX_TRIES} drawn for one sample "
                         f"({len(self.skipped)} unreadable files skipped so far)")

    def _crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w, _ = self.shape
        if self.crop == "centre":
            return centre_crop(image, h, w)
        top, left = rng.integers(image.shape[0] - h + 1), rng.integers(image.shape[1] - w + 1)
        patch = image[top:top + h, left:left + w]  # (H, W, C)
        return patch[:, ::-1] if rng.random() < 0.5 else patch

    def all_images(self) -> np.ndarray:
        """The central crop of every readable item, normalised: (N, H, W, C) float32 (for
        evaluation sets; this one holds them all in memory)."""
        h, w, _ = self.shape
        crops = []
        for k in range(len(self)):
            try:
                crops.append(centre_crop(self.read(k), h, w))
            except ValueError:
                if self.on_error == "raise":
                    raise
                self.skipped.add(self.item_file(k))
        if not crops:
            raise ValueError(f"{self.describe()}: no readable file")
        return normalise_images(np.stack(crops))


class ImageFolder(StreamingSource):
    """Every .jpg, .jpeg and .png file (any case) under a folder, recursively, in order of
    relative path, decoded when a sample draws it (nothing is held but the file index).

    Parameters
    ----------
    root : str or Path
        The folder.
    size : (H, W)
        Sample rows and columns.
    channels : {1, 3}
        Grey or RGB.
    seed : int
        With the step and the sample's index, fixes every sample.
    crop : {"random", "centre"}
        Random crops, flipped left-right half of the time, or the central crop.
    on_error : {"raise", "skip"}
        A file that cannot be decoded stops the run (naming it), or is skipped and counted.
    index : FileIndex, optional
        The folder's listing, when the caller has it (a rank that received it); else listed here.
    cache : path, optional
        Where to keep the listing between runs (see :meth:`FileIndex.cached`).

    Raises
    ------
    FileNotFoundError
        ``root`` is not a directory.
    ValueError
        No image under ``root``; with ``on_error="raise"``, an image that cannot be decoded
        when it is drawn (the message names it).
    """

    def __init__(self, root: str | Path, size: Sequence[int], channels: int = 3, seed: int = 0,
                 crop: str = "random", on_error: str = "raise", index: FileIndex | None = None,
                 cache: str | Path | None = None):
        super().__init__(size, channels, seed, crop, on_error)
        self.root = Path(root)
        self.index = index if index is not None else FileIndex.cached(self.root, IMAGE_SUFFIXES, cache)
        if not len(self.index):
            raise ValueError(f"no images under {self.root}: looked for {', '.join(IMAGE_SUFFIXES)} files (any case)")

    @property
    def files(self) -> list[Path]:
        """Every indexed file (a list as long as the folder: for small folders and tests)."""
        return [self.index.path(k) for k in range(len(self.index))]

    def read(self, k: int) -> np.ndarray:
        return load_image(self.index.path(k), self.shorter, self.mode)  # (h, w, C)

    def item_file(self, k: int) -> str:
        return str(self.index.path(k))

    def __len__(self) -> int:
        return len(self.index)

    def describe(self) -> str:
        return f"image folder {self.root}: {len(self)} images, {self.crop} crops {self._shape_text()}"
