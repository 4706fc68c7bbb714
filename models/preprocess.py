"""Input whitening: a ZCA filter estimated from training patches, applied as one convolution
shared by every location (the natural form for a locally connected first stage).

ZCA (Bell and Sejnowski 1997; UFLDL's "linear decoders" section) maps a patch x to
``U diag(1 / sqrt(s + eps)) U^T x``, U and s the eigenvectors and eigenvalues of the patch
covariance. The row of that matrix belonging to a patch's centre pixel, as an f x f x C -> C
kernel, is the whitening filter: correlating an image with it flattens the image's spectrum
(natural images fall about as 1/frequency), so reconstruction no longer rewards the few
smooth, high-variance directions and the sparsity term can find edges. ``eps`` (on the scale
of the per-image normalised pixels, variance about 1) keeps the noise at high frequencies
from being amplified without bound: UFLDL uses 0.01 to 0.1.

Borders are reflected (numpy's "reflect"), so the whitened image keeps its size. The
convolution is written as a fixed sequence of elementwise multiply-adds over the kernel's
taps: a rank whitening its block (with a halo read from the global batch every rank holds)
gets the same bits as one whitening the whole image. Pure NumPy, no MPI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["Whitening", "estimate_whitening", "reflect_index"]


def reflect_index(lo: int, hi: int, n: int) -> np.ndarray:
    """Indices lo..hi-1 into an axis of length n, reflected at its ends ("reflect": ..2 1 | 0 1 2 .. n-1 | n-2 ..)."""
    idx = np.abs(np.arange(lo, hi))
    return np.where(idx > n - 1, 2 * (n - 1) - idx, idx)


@dataclass(frozen=True)
class Whitening:
    """A ZCA whitening filter.

    Attributes
    ----------
    kernel : (f, f, C, C) float64 array
        ``out[y, x, co] = sum over (di, dj, ci) of kernel[di, dj, ci, co] * in[y + di - r, x + dj - r, ci]``, r = f // 2.
    eps : float
        The regulariser it was estimated with (recorded, not used to apply it).
    """

    kernel: np.ndarray
    eps: float

    @property
    def size(self) -> int:
        """The filter side f (odd)."""
        return int(self.kernel.shape[0])

    def apply(self, images: np.ndarray, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Whiten the ``rows`` x ``cols`` block of a global batch.

        Parameters
        ----------
        images : (H, W, C, B) array
            The whole batch (the block's halo is read from it, reflected at the image's edges).
        rows, cols : slice
            The block (unit step), default the whole image.

        Returns
        -------
        (rows, cols, C, B) float32, C-contiguous
        """
        h, w, c, _ = images.shape
        if c != self.kernel.shape[2]:
            raise ValueError(f"expected images with {self.kernel.shape[2]} channels for this whitening, got {c}")
        r = self.size // 2
        if r >= min(h, w):
            raise ValueError(f"expected images larger than the whitening filter ({self.size}), got {h} x {w}")
        r0, r1, _ = rows.indices(h)
        c0, c1, _ = cols.indices(w)
        x = np.asarray(images, dtype=np.float32)[np.ix_(reflect_index(r0 - r, r1 + r, h),
                                                        reflect_index(c0 - r, c1 + r, w))]  # (bh+2r, bw+2r, C, B)
        kernel = self.kernel.astype(np.float32)
        out = np.zeros((r1 - r0, c1 - c0) + images.shape[2:], dtype=np.float32)  # (bh, bw, C, B)
        for di in range(self.size):
            for dj in range(self.size):
                for ci in range(c):
                    # (bh, bw, 1, B) * (C, 1): every output channel from input channel ci at this tap
                    out += x[di:di + r1 - r0, dj:dj + c1 - c0, ci:ci + 1] * kernel[di, dj, ci][:, None]
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what a checkpoint's metadata stores (floats written exactly)."""
        return {"kind": "zca", "size": self.size, "eps": self.eps, "kernel": self.kernel.tolist()}

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> "Whitening":
        """The whitening :meth:`as_dict` wrote."""
        kernel = np.asarray(table["kernel"], dtype=np.float64)
        if table.get("kind") != "zca" or kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1]:
            raise ValueError(f"expected a stored ZCA whitening, got kind {table.get('kind')!r}, "
                             f"kernel shape {kernel.shape}")
        return cls(kernel, float(table["eps"]))


def estimate_whitening(images: np.ndarray, size: int, eps: float, patches: int = 20000,
                       seed: int = 0) -> Whitening:
    """The ZCA filter of the ``size`` x ``size`` patches of ``images``.

    Parameters
    ----------
    images : (H, W, C, B) array
        Training images (a batch of the data source).
    size : int
        Filter side (odd, smaller than the images).
    eps : float
        Added to the covariance's eigenvalues (> 0).
    patches : int
        Patches drawn (uniformly over images and positions) for the covariance.
    seed : int
        Seed of the draw.
    """
    h, w, c, b = images.shape
    if size < 1 or size % 2 == 0 or size >= min(h, w):
        raise ValueError(f"expected an odd whitening size smaller than the images ({h} x {w}), got {size}")
    if not eps > 0:
        raise ValueError(f"expected whitening eps > 0, got {eps}")
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, h - size + 1, patches)
    xs = rng.integers(0, w - size + 1, patches)
    bs = rng.integers(0, b, patches)
    offsets = np.arange(size)
    x = np.asarray(images, dtype=np.float64)
    samples = x[(ys[:, None, None] + offsets[None, :, None]), (xs[:, None, None] + offsets[None, None, :]), :,
                bs[:, None, None]]  # (N, f, f, C)
    flat = samples.reshape(patches, -1)  # (N, f*f*C), ordered (di, dj, c)
    flat = flat - flat.mean(axis=0)
    cov = flat.T @ flat / patches  # (D, D)
    vals, vecs = np.linalg.eigh(cov)
    zca = (vecs * (1.0 / np.sqrt(np.maximum(vals, 0.0) + eps))) @ vecs.T  # (D, D), symmetric
    r = size // 2
    centre = (r * size + r) * c  # index of (r, r, channel 0)
    rows = zca[centre:centre + c]  # (C_out, D): the centre pixel's channels
    kernel = rows.reshape(c, size, size, c).transpose(1, 2, 3, 0)  # (f, f, C_in, C_out)
    return Whitening(np.ascontiguousarray(kernel), float(eps))
