"""Input preprocessing: local contrast normalisation and a ZCA whitening filter estimated
from training patches, each applied as one operation shared by every location (the natural
form for a locally connected first stage), chained by :class:`Preprocess`.

LCN (``model.input_lcn``) is the layers' own (:func:`layers.window_kernels.lcn_forward`:
subtract the Gaussian-weighted local mean, divide by max(floor, local deviation)), here on
the input with reflected borders so the image keeps its size.

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
taps, and LCN computes each output from its own window: a rank preprocessing its block (with
a halo read from the global batch every rank holds) gets the same bits as one preprocessing
the whole image. No MPI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from layers.window_kernels import lcn_forward

__all__ = ["LocalContrast", "Preprocess", "Whitening", "estimate_whitening", "reflect_index"]


def reflect_index(lo: int, hi: int, n: int) -> np.ndarray:
    """Indices lo..hi-1 into an axis of length n, reflected at its ends ("reflect": ..2 1 | 0 1 2 .. n-1 | n-2 ..)."""
    idx = np.abs(np.arange(lo, hi))
    return np.where(idx > n - 1, 2 * (n - 1) - idx, idx)


_CACHE_BLOCK = 256 * 1024  # bytes of output rows whitened together (with their input rows, within L2)


@dataclass(frozen=True)
class Whitening:
    """A ZCA whitening filter.

    Attributes
    ----------
    kernel : (f, f, C, C) float64 array
        ``out[y, x, co] = sum over (di, dj, ci) of kernel[di, dj, ci, co] * in[y + di - r, x + dj - r, ci]``,
        r = f // 2.
    eps : float
        The regulariser it was estimated with (recorded, not used to apply it).
    """

    kernel: np.ndarray
    eps: float

    @property
    def size(self) -> int:
        """The filter side f (odd)."""
        return int(self.kernel.shape[0])

    @property
    def radius(self) -> int:
        """Pixels of halo an output reads on each side."""
        return self.size // 2

    def valid(self, x: np.ndarray) -> np.ndarray:
        """The whitened interior of ``x`` (Hb, Wb, C, B) padded by :attr:`radius`: (Hb - 2r, Wb - 2r, C, B) float32."""
        c, r = x.shape[2], self.radius
        if c != self.kernel.shape[2]:
            raise ValueError(f"expected images with {self.kernel.shape[2]} channels for this whitening, got {c}")
        x = np.asarray(x, dtype=np.float32)
        kernel = self.kernel.astype(np.float32)
        h, w = x.shape[0] - 2 * r, x.shape[1] - 2 * r
        out = np.zeros((h, w) + x.shape[2:], dtype=np.float32)  # (bh, bw, C, B)
        # a few output rows at a time, so that the rows the taps read stay in cache (twice as
        # fast at the demo's size); every element still sums its taps in the same order: the
        # same bits as one pass per tap over the whole block
        row_bytes = max(1, w * out.shape[2] * out.shape[3] * 4)
        step = max(1, _CACHE_BLOCK // row_bytes)
        for i0 in range(0, h, step):
            i1 = min(h, i0 + step)
            block, tap = out[i0:i1], np.empty_like(out[i0:i1])
            for di in range(self.size):
                for dj in range(self.size):
                    for ci in range(c):
                        # (rows, bw, 1, B) * (C, 1): every output channel from input channel ci at this tap
                        np.multiply(x[i0 + di:i1 + di, dj:dj + w, ci:ci + 1], kernel[di, dj, ci][:, None], out=tap)
                        block += tap
        return out

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
        return Preprocess((self,)).apply(images, rows, cols)

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


@dataclass(frozen=True)
class LocalContrast:
    """Local contrast normalisation of the input (the layers' LCN, reflected borders).

    Attributes
    ----------
    n : int
        Window side (odd).
    sigma : float
        Gaussian width in pixels.
    floor : float
        The divisor is max(floor, local deviation).
    """

    n: int
    sigma: float
    floor: float = 0.1

    @property
    def radius(self) -> int:
        """Pixels of halo an output reads on each side."""
        return self.n // 2

    def valid(self, x: np.ndarray) -> np.ndarray:
        """The normalised interior of ``x`` (Hb, Wb, C, B) padded by :attr:`radius`, float32."""
        return np.asarray(lcn_forward(np.asarray(x, dtype=np.float32), self.n, self.sigma, self.floor))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"kind": "lcn", "n": self.n, "sigma": self.sigma, "floor": self.floor}


@dataclass(frozen=True)
class Preprocess:
    """Operations applied in order to every input image (each a :class:`LocalContrast` or a
    :class:`Whitening`), blockwise with the same bits as on the whole image."""

    steps: tuple

    def apply(self, images: np.ndarray, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """The ``rows`` x ``cols`` block of the preprocessed global batch ``images`` (H, W, C, B):
        (rows, cols, C, B) float32, C-contiguous."""
        h, w = images.shape[:2]
        reach = sum(step.radius for step in self.steps)
        if reach >= min(h, w):
            raise ValueError(f"expected images larger than the preprocessing's reach ({reach} pixels a side), "
                             f"got {h} x {w}")
        r0, r1, _ = rows.indices(h)
        c0, c1, _ = cols.indices(w)
        return np.ascontiguousarray(self._through(len(self.steps) - 1, images, (r0, r1), (c0, c1)))

    def _through(self, last: int, images: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Output of steps[:last + 1] on the rows x cols block (the image reflected at its edges
        before each step, as applying each step to the whole image would)."""
        h, w = images.shape[:2]
        step = self.steps[last]
        ri = reflect_index(rows[0] - step.radius, rows[1] + step.radius, h)
        ci = reflect_index(cols[0] - step.radius, cols[1] + step.radius, w)
        if last == 0:
            x = images[np.ix_(ri, ci)]
        else:  # the step below over the smallest block holding every (reflected) position read here
            lo_r, lo_c = int(ri.min()), int(ci.min())
            below = self._through(last - 1, images, (lo_r, int(ri.max()) + 1), (lo_c, int(ci.max()) + 1))
            x = below[np.ix_(ri - lo_r, ci - lo_c)]
        return step.valid(x)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what a checkpoint's metadata stores."""
        return {"steps": [step.as_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> "Preprocess":
        """The preprocessing :meth:`as_dict` wrote (or a single stored whitening)."""
        steps: Sequence[Mapping[str, Any]] = table["steps"] if "steps" in table else [table]
        out = []
        for step in steps:
            if step.get("kind") == "lcn":
                out.append(LocalContrast(int(step["n"]), float(step["sigma"]), float(step["floor"])))
            else:
                out.append(Whitening.from_dict(step))
        return cls(tuple(out))
