"""Training data: batches (H, W, C, B) float32, every sample drawn deterministically from
(seed, step, sample index).

Every image of a batch is normalised on its own (mean 0, standard deviation 1), so that a
brightness or contrast cue cannot stand in for shape. Sample n of batch s depends on (seed, s,
n) only: every process that asks for it gets the same bits, in any order and whatever else it
draws, so each rank can draw its own share of a batch, and a run resumed at step 500 sees the
batch 500 an uninterrupted run would. Sources here: :class:`BundledImages` (the default:
images shipped with scikit-image, some faces held out for evaluation) and :class:`ArrayImages`
(images in memory: CIFAR-10 and STL-10, read by :mod:`models.data.readers`); the streaming
ones are in :mod:`models.data.folder` and :mod:`models.data.video`. No MPI here: the caller
distributes.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
from PIL import Image

from .readers import load_lfw, load_natural_images

__all__ = ["ArrayImages", "BundledImages", "DataError", "ImageSource", "centre_crop", "normalise_image", "normalise_images"]

BICUBIC = Image.Resampling.BICUBIC
_THREAD = threading.local()  # each thread's reusable sample generator (ImageSource._reused_rng)


class DataError(ValueError):
    """A batch could not be drawn during training (an unreadable file with ``on_error="raise"``);
    raised on every rank together, the message naming the file."""


def normalise_image(image: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Normalise one image: subtract the mean of all its pixels and channels, divide by their
    standard deviation, or by ``eps`` where that is larger (a constant image becomes zeros).

    Float32 arithmetic with float64 sums (no float64 copy of the image); the result depends on
    the image alone, so a sample is the same bits in any batch and on any rank.

    Parameters
    ----------
    image : (H, W, C) array
        Any real dtype (uint8, float).

    Returns
    -------
    (H, W, C) float32
    """
    return normalise_images(np.asarray(image)[None], eps)[0]


NORMALISE_CHUNK = 1 << 16  # elements normalised in one vectorised pass (small images go several at a time)


def normalise_images(images: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """:func:`normalise_image` applied to each image of a stack, several small images per
    vectorised pass (each image's sums are its own row reductions: the same bits as alone).

    Parameters
    ----------
    images : (N, H, W, C) array
        Any real dtype (uint8, float).
    eps : float
        Floor of the standard deviation.

    Returns
    -------
    (N, H, W, C) float32
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected images (N, H, W, C), got shape {images.shape}")
    n = len(images)
    flat = images.reshape(n, math.prod(images.shape[1:]))  # (N, H*W*C)
    size = max(flat.shape[1], 1)
    out = np.empty(flat.shape, np.float32)
    chunk = max(1, NORMALISE_CHUNK // size)
    for lo in range(0, n, chunk):
        x = np.asarray(flat[lo:lo + chunk], np.float32)  # (n', H*W*C)
        mean = x.sum(axis=1, dtype=np.float64) / size  # (n',)
        centred = np.subtract(x, mean.astype(np.float32)[:, None], out=out[lo:lo + chunk])
        std = np.sqrt(np.square(centred).sum(axis=1, dtype=np.float64) / size)  # (n',)
        centred /= np.maximum(std, eps).astype(np.float32)[:, None]
    return out.reshape(images.shape)


def _check_shape(size: Sequence[int], channels: int) -> tuple[int, int, int]:
    """(H, W, C) of one sample, validated."""
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"expected size (H, W) of two positive ints, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"expected channels 1 or 3, got {channels!r}")
    return int(size[0]), int(size[1]), int(channels)


def centre_crop(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """The central (h, w) window of an (h', w', C) image."""
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[top:top + h, left:left + w]  # (h, w, C)


def _convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W, C) to (N, H, W, channels): grey replicated to RGB, or RGB to grey by the
    ITU-R 601-2 luma of Pillow's "L" mode (bit for bit on uint8)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if (have, channels) == (1, 3):
        return np.repeat(images, 3, axis=-1)
    if (have, channels) != (3, 1):
        raise ValueError(f"expected images with 1 or 3 channels and channels 1 or 3, got {have} and {channels}")
    if images.dtype == np.uint8:
        luma = images.astype(np.uint32) @ np.array([19595, 38470, 7471], np.uint32)  # (N, H, W)
        return ((luma + 0x8000) >> 16).astype(np.uint8)[..., None]
    return (images @ np.array([0.299, 0.587, 0.114]))[..., None]


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (h, w, C) image resized to (H, W, C) with Pillow (bicubic), plane by plane; uint8
    stays uint8, any other dtype becomes float32."""
    planes = image if image.dtype == np.uint8 else image.astype(np.float32)  # (h, w, C)
    resized = [Image.fromarray(np.ascontiguousarray(planes[:, :, c])).resize(size[::-1], BICUBIC)
               for c in range(image.shape[2])]
    return np.stack([np.asarray(plane) for plane in resized], axis=-1)  # (H, W, C)


class ImageSource(ABC):
    """A training set: batches (H, W, C, B) float32, each image normalised, deterministic in
    (seed, step); each sample deterministic in (seed, step, n) alone.

    Sample ``n`` of step ``step`` is drawn by a generator seeded with (seed, step, n) only, so a
    rank that draws samples 32-63 of a batch gets the bits that one drawing the whole batch
    would, in any call order: the batch is the same at any number of ranks.

    Attributes
    ----------
    shape : (H, W, C)
        One sample.
    seed : int
        With the step and the sample's index, fixes every sample.
    """

    shape: tuple[int, int, int]
    seed: int

    def __init__(self, size: Sequence[int], channels: int, seed: int):
        self.shape = _check_shape(size, channels)
        if seed < 0:
            raise ValueError(f"expected seed >= 0, got {seed}")
        self.seed = int(seed)

    def batch(self, step: int, size: int) -> np.ndarray:
        """Batch number ``step`` of ``size`` samples: the same bits on every process and in any
        call order.

        Returns
        -------
        (H, W, C, size) float32, C-contiguous
            Each sample normalised by :func:`normalise_image`.
        """
        if size < 1:
            raise ValueError(f"expected a batch size >= 1, got {size}")
        return np.ascontiguousarray(self.samples(step, range(size)).transpose(1, 2, 3, 0))  # (H, W, C, B)

    def samples(self, step: int, indices: Sequence[int]) -> np.ndarray:
        """Samples ``indices`` of batch ``step``, each normalised: what :meth:`batch` holds at
        those positions, bit for bit, whatever else is drawn.

        Returns
        -------
        (len(indices), H, W, C) float32
        """
        raw = np.empty((len(indices), *self.shape), np.float32)  # (n, H, W, C)
        for k, n in enumerate(indices):
            raw[k] = self._sample(self._reused_rng(step, n))
        return normalise_images(raw)

    def sample_rng(self, step: int, n: int) -> np.random.Generator:
        """The generator of sample ``n`` of batch ``step``: a function of (seed, step, n) alone.

        Philox (Salmon et al. 2011, counter-based): the key is (seed, step) and the counter
        starts at n * 2**128, so every sample has a stream of 2**128 draws of its own, and a
        sample's stream is found without drawing the ones before it.
        """
        key, counter = self._philox_words(step, n)
        return np.random.Generator(np.random.Philox(key=key, counter=counter))

    def _philox_words(self, step: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(key, counter) of sample ``n`` of batch ``step``'s Philox stream."""
        if step < 0 or n < 0:
            raise ValueError(f"expected step >= 0 and sample index >= 0, got step {step} and index {n}")
        return np.array([self.seed, step], np.uint64), np.array([0, 0, n, 0], np.uint64)

    def _reused_rng(self, step: int, n: int) -> np.random.Generator:
        """:meth:`sample_rng`'s generator, the same stream, but this thread's one generator set
        to it (several times cheaper than a new one; valid until this thread's next call)."""
        key, counter = self._philox_words(step, n)
        rng = getattr(_THREAD, "rng", None)
        if rng is None:
            rng = _THREAD.rng = np.random.Generator(np.random.Philox(0))
        rng.bit_generator.state = {"bit_generator": "Philox", "buffer": np.zeros(4, np.uint64), "buffer_pos": 4,
                                   "has_uint32": 0, "uinteger": 0, "state": {"counter": counter, "key": key}}
        return rng

    @abstractmethod
    def _sample(self, rng: np.random.Generator) -> np.ndarray:
        """One sample (H, W, C), any real dtype, not yet normalised."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of images available for training."""

    @abstractmethod
    def describe(self) -> str:
        """One line: name, number of images, sample shape."""

    def _shape_text(self) -> str:
        return "x".join(map(str, self.shape))


class ArrayImages(ImageSource):
    """Samples drawn uniformly, with replacement, from images held in memory; no augmentation.

    Parameters
    ----------
    images : (N, H, W, C) uint8 or float
        C is 1 or 3.
    seed : int
        With the step, fixes every batch.
    labels : (N,) array, optional
        Kept as :attr:`labels` (for evaluation); sampling ignores them.
    name : str
        Shown by :meth:`describe`.
    size : (H, W), optional
        Resize every image to it once, here, with Pillow (bicubic), where it differs.
    channels : {1, 3}, optional
        Convert every image to it once, here: grey replicated, or RGB to grey (ITU-R 601-2 luma).
    """

    def __init__(self, images: np.ndarray, seed: int = 0, labels: np.ndarray | None = None, name: str = "arrays",
                 size: Sequence[int] | None = None, channels: int | None = None):
        images = np.asarray(images)  # (N, H, W, C)
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"expected images (N, H, W, C) with N >= 1, got shape {images.shape}")
        if labels is not None and np.shape(labels) != (len(images),):
            raise ValueError(f"expected labels of shape ({len(images)},), got {np.shape(labels)}")
        images = _convert_channels(images, images.shape[3] if channels is None else channels)
        if size is not None and tuple(size) != images.shape[1:3]:
            images = np.stack([_resize(image, tuple(size)) for image in images])  # (N, H, W, C)
        super().__init__(images.shape[1:3], images.shape[3], seed)
        self.images = images
        self.labels = labels
        self.name = name

    def _sample(self, rng: np.random.Generator) -> np.ndarray:
        return self.images[rng.integers(len(self.images))]  # (H, W, C)

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> str:
        return f"{self.name}: {len(self)} images, samples {self._shape_text()}"


class BundledImages(ImageSource):
    """The default training set, shipped inside scikit-image (nothing to download): natural
    images and faces, with some faces held out for evaluation.

    Natural images (:data:`models.data.readers.NATURAL_IMAGES`, none showing a human face): brick,
    cell, chelsea, clock, coffee, coins, grass, gravel, hubble_deep_field, immunohistochemistry,
    moon, page, retina, rocket, stereo_motorcycle (left view) and text; decoded once, here,
    longer side capped at 512 pixels. Faces: ``skimage.data.lfw_subset()``, whose first 100
    grey 25 x 25 images are faces and last 100 non-face patches.

    A sample is, with probability ``face_share``, a training face (a random crop of 90 to 100 %
    of its side, resized with Pillow bicubic to ``size``, grey replicated to every channel), or
    else a random crop of a natural image (side 1 to 4 times ``size``, log-uniform, capped by the
    image; resized to ``size``). Either is flipped left-right half of the time. With channels 1,
    colour images are turned grey; with channels 3, grey ones are replicated.

    The last ``holdout`` faces and the last ``holdout`` non-face patches never enter training:
    the sampler holds only the first ``100 - holdout`` faces, and no non-face patch.

    Parameters
    ----------
    size : (H, W)
        Sample rows and columns.
    channels : {1, 3}
        Grey or RGB.
    face_share : float
        Probability that a sample is a face, in [0, 1].
    seed : int
        With the step, fixes every batch.
    holdout : int
        Faces (and non-face patches) kept for evaluation, in range(100).
    train_faces : int, optional
        How many distinct faces training samples from: the first ``train_faces`` of the
        ``100 - holdout`` it may use (default all of them). Studies of how selectivity grows
        with data vary it; the held-out set does not change with it.
    """

    FACES = 100
    MAX_SCALE = 4.0
    HELDOUT_SEED = 2012  # natural crops of heldout_distractors(): the same for every training seed

    def __init__(self, size: Sequence[int], channels: int = 3, face_share: float = 0.1, seed: int = 0,
                 holdout: int = 30, train_faces: int | None = None):
        if not 0 <= face_share <= 1:
            raise ValueError(f"expected face_share in [0, 1], got {face_share}")
        if not 0 <= holdout < self.FACES:
            raise ValueError(f"expected holdout in range({self.FACES}), got {holdout}")
        keep = self.FACES - int(holdout)
        if train_faces is not None and (isinstance(train_faces, bool) or not isinstance(train_faces, int)
                                        or not 1 <= train_faces <= keep):
            raise ValueError(f"expected data.train_faces from 1 to {keep} (100 faces less holdout {holdout}), "
                             f"got {train_faces}")
        super().__init__(size, channels, seed)
        self.face_share = float(face_share)
        self.holdout = int(holdout)
        self.natural = load_natural_images("RGB" if channels == 3 else "L")
        faces, patches = load_lfw()  # (100, 25, 25) each
        used = keep if train_faces is None else int(train_faces)
        self.faces = [Image.fromarray(face) for face in faces[:used]]  # the only faces sampled
        self._heldout_faces = faces[keep:]  # (holdout, 25, 25)
        self._heldout_patches = patches[keep:]  # (holdout, 25, 25)

    def batch_with_flags(self, step: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`batch` (the same bits) and which of its samples are faces.

        Returns
        -------
        batch : (H, W, C, size) float32
        faces : (size,) bool
        """
        if size < 1:
            raise ValueError(f"expected a batch size >= 1, got {size}")
        raw = np.empty((size, *self.shape), np.float32)  # (B, H, W, C)
        faces = np.empty(size, bool)
        for n in range(size):
            raw[n], faces[n] = self._sample_flagged(self._reused_rng(step, n))
        return np.ascontiguousarray(normalise_images(raw).transpose(1, 2, 3, 0)), faces  # (H, W, C, B)

    def training_faces(self) -> np.ndarray:
        """Every training face, whole and unflipped, normalised: (100 - holdout, H, W, C) float32."""
        return normalise_images(np.array([self._face(face) for face in self.faces]))

    def heldout_faces(self) -> np.ndarray:
        """The held-out faces, whole, normalised: (holdout, H, W, C) float32."""
        return normalise_images(self._grey_samples(self._heldout_faces))

    def heldout_distractors(self) -> np.ndarray:
        """Negatives for evaluation, normalised: (2 * holdout, H, W, C) float32.

        The ``holdout`` held-out non-face patches of the LFW subset, then ``holdout`` crops of
        natural images drawn with the fixed :attr:`HELDOUT_SEED`, made grey (replicated to every
        channel) like the faces, so colour cannot tell the classes apart. Those natural images
        are the training ones: a crop may overlap regions that training samples also see.
        """
        rng = np.random.default_rng(self.HELDOUT_SEED)
        crops = np.array([self._natural_crop(rng) for _ in range(self.holdout)], np.float64).reshape(-1, *self.shape)
        crops = np.repeat(crops.mean(axis=3, keepdims=True), self.shape[2], axis=3)  # (holdout, H, W, C) grey
        return np.concatenate([normalise_images(self._grey_samples(self._heldout_patches)), normalise_images(crops)])

    def _sample(self, rng: np.random.Generator) -> np.ndarray:
        return self._sample_flagged(rng)[0]

    def _sample_flagged(self, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """One sample (H, W, C), not normalised, and whether it is a face."""
        face = bool(rng.random() < self.face_share)
        sample = self._random_face(rng) if face else self._natural_crop(rng)  # (H, W, C)
        return (sample[:, ::-1] if rng.random() < 0.5 else sample), face

    def _face(self, face: Image.Image, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
        """A grey face (or its ``box``) resized to (H, W, C), grey replicated."""
        h, w, c = self.shape
        grey = np.asarray(face.resize((w, h), BICUBIC, box=box))  # (H, W)
        return np.repeat(grey[:, :, None], c, axis=2)  # (H, W, C)

    def _random_face(self, rng: np.random.Generator) -> np.ndarray:
        """A training face, cropped to a random 90 to 100 % of its side: (H, W, C)."""
        face = self.faces[rng.integers(len(self.faces))]
        side = face.size[0] * rng.uniform(0.9, 1.0)
        left, top = rng.uniform(0, face.size[0] - side, size=2)
        return self._face(face, (left, top, left + side, top + side))

    def _grey_samples(self, grey: np.ndarray) -> np.ndarray:
        """(N, 25, 25) grey images resized to (N, H, W, C)."""
        return np.array([self._face(Image.fromarray(image)) for image in grey], np.float32).reshape(-1, *self.shape)

    def _natural_crop(self, rng: np.random.Generator) -> np.ndarray:
        """A random crop of a natural image, resized to (H, W, C) uint8."""
        h, w, c = self.shape
        image = self.natural[rng.integers(len(self.natural))]
        most = min(self.MAX_SCALE, image.size[1] / h, image.size[0] / w)
        scale = math.exp(rng.uniform(math.log(min(1.0, most)), math.log(most)))
        left, top = rng.uniform(0, image.size[0] - scale * w), rng.uniform(0, image.size[1] - scale * h)
        box = (left, top, left + scale * w, top + scale * h)
        # reducing_gap: shrink by a whole factor first (box filter), then bicubic: about half the time
        return np.asarray(image.resize((w, h), BICUBIC, box=box, reducing_gap=2.0)).reshape(h, w, c)

    def __len__(self) -> int:
        return len(self.natural) + len(self.faces)

    def describe(self) -> str:
        return (f"bundled scikit-image data: {len(self)} images ({len(self.natural)} natural, {len(self.faces)} faces, "
                f"face share {self.face_share:g}, {self.holdout} held out), samples {self._shape_text()}")
