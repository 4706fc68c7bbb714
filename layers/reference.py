"""Serial NumPy references for the layer kernels: plain loops over output locations, for tests only.

Layout everywhere is (H, W, C, B): rows, columns, maps, batch. These functions favour being
obviously correct over speed; they compute in the inputs' dtype (use float64 to compare).

The locally connected layer orders a window's fan-in (dj, di, c): column offset slowest, channel
fastest, so ``w[i, j, m, fan_in_index(di, dj, c, k, C)]`` multiplies ``xpad[s*i + di, s*j + dj, c]``.
"""

from __future__ import annotations

import numpy as np

from layers.window_kernels import gaussian_window

__all__ = [
    "fan_in_index",
    "lc_reference",
    "lc_transpose_reference",
    "l2pool_reference",
    "lcn_reference",
]


def fan_in_index(di: int, dj: int, c: int, k: int, C: int) -> int:
    """Position of input (row offset di, column offset dj, channel c) in a k x k x C fan-in."""
    return (dj * k + di) * C + c


def _fan_in_offsets(k: int, C: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays (di, dj, c) of length k*k*C: entry f is the window position of fan-in index f."""
    di_of = np.empty(k * k * C, dtype=np.intp)
    dj_of = np.empty_like(di_of)
    c_of = np.empty_like(di_of)
    for di in range(k):
        for dj in range(k):
            for c in range(C):
                f = fan_in_index(di, dj, c, k, C)
                di_of[f], dj_of[f], c_of[f] = di, dj, c
    return di_of, dj_of, c_of


def _out_extent(n: int, k: int, stride: int, padding: int) -> int:
    """Number of windows of size k, step ``stride``, over n elements padded by ``padding``."""
    return (n + 2 * padding - k) // stride + 1


def lc_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, k: int, stride: int,
                 padding: int) -> np.ndarray:
    """Locally connected layer (untied weights), one output location at a time.

    Parameters
    ----------
    x : ndarray (H, W, C, B)
    w : ndarray (oh, ow, M, k*k*C)
        Weights of every output location, fan-in ordered (dj, di, c).
    b : ndarray (oh, ow, M) or None
    k, stride, padding : int
        Window size, step, and zero padding added to both sides of H and W.

    Returns
    -------
    ndarray (oh, ow, M, B)
        ``y[i, j] = w[i, j] @ patch(i, j) + b[i, j]``.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    H, W, C, B = x.shape
    oh, ow = _out_extent(H, k, stride, padding), _out_extent(W, k, stride, padding)
    if w.shape[:2] != (oh, ow) or w.shape[3] != k * k * C:
        raise ValueError(f"expected w of shape ({oh}, {ow}, M, {k * k * C}), got {w.shape}")
    xpad = np.pad(x, ((padding, padding), (padding, padding), (0, 0), (0, 0)))
    di_of, dj_of, c_of = _fan_in_offsets(k, C)
    y = np.zeros((oh, ow, w.shape[2], B), dtype=np.result_type(x, w))   # (oh, ow, M, B)
    for i in range(oh):
        for j in range(ow):
            patch = xpad[stride * i + di_of, stride * j + dj_of, c_of]  # (K, B)
            y[i, j] = w[i, j] @ patch
            if b is not None:
                y[i, j] += np.asarray(b)[i, j][:, None]
    return y


def lc_transpose_reference(h: np.ndarray, w: np.ndarray, in_hw: tuple[int, int], k: int,
                           stride: int, padding: int) -> np.ndarray:
    """Adjoint of ``x -> lc_reference(x, w, None, k, stride, padding)``.

    Parameters
    ----------
    h : ndarray (oh, ow, M, B)
    w : ndarray (oh, ow, M, k*k*C)
    in_hw : (H, W)
        Extent of the forward input, without padding.
    k, stride, padding : int
        As in the forward pass.

    Returns
    -------
    ndarray (H, W, C, B)
        Overlap-add of ``w[i, j].T @ h[i, j]`` over the windows, padded border dropped.
    """
    h = np.asarray(h)
    w = np.asarray(w)
    H, W = in_hw
    oh, ow, M, B = h.shape
    if w.shape[3] % (k * k) or w.shape[:3] != (oh, ow, M):
        raise ValueError(f"expected w of shape ({oh}, {ow}, {M}, k*k*C) with k={k}, got {w.shape}")
    C = w.shape[3] // (k * k)
    if (_out_extent(H, k, stride, padding), _out_extent(W, k, stride, padding)) != (oh, ow):
        raise ValueError(f"expected h with {_out_extent(H, k, stride, padding)}x"
                         f"{_out_extent(W, k, stride, padding)} locations for input {H}x{W}, "
                         f"got {oh}x{ow}")
    di_of, dj_of, c_of = _fan_in_offsets(k, C)
    xpad = np.zeros((H + 2 * padding, W + 2 * padding, C, B), dtype=np.result_type(h, w))
    for i in range(oh):
        for j in range(ow):
            col = w[i, j].T @ h[i, j]                                  # (K, B)
            np.add.at(xpad, (stride * i + di_of, stride * j + dj_of, c_of), col)
    return xpad[padding:padding + H, padding:padding + W]


def l2pool_reference(x: np.ndarray, p: int, stride: int, eps: float) -> np.ndarray:
    """``y[i, j] = sqrt(eps + sum of squares over the p x p window at (stride*i, stride*j))``.

    Parameters
    ----------
    x : ndarray (H, W, C, B)
    p, stride : int
    eps : float

    Returns
    -------
    ndarray (oh, ow, C, B)
    """
    x = np.asarray(x)
    H, W, C, B = x.shape
    oh, ow = (H - p) // stride + 1, (W - p) // stride + 1
    y = np.empty((oh, ow, C, B), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            win = x[stride * i:stride * i + p, stride * j:stride * j + p]  # (p, p, C, B)
            y[i, j] = np.sqrt(eps + np.sum(win * win, axis=(0, 1)))
    return y


def lcn_reference(x: np.ndarray, n: int, sigma: float, floor: float) -> np.ndarray:
    """Local contrast normalisation, one n x n x C window per output location (stride 1, valid).

    Parameters
    ----------
    x : ndarray (H, W, C, B)
    n : int
        Odd window size.
    sigma, floor : float

    Returns
    -------
    ndarray (H - n + 1, W - n + 1, C, B)
        ``(x[i + r, j + r] - mu) / max(floor, sqrt(S))``, mu and S the window's weighted mean
        and variance with weights ``gaussian_window(n, sigma) / C`` per map.
    """
    x = np.asarray(x)
    H, W, C, B = x.shape
    r = n // 2
    wts = gaussian_window(n, sigma)[:, :, None, None] / C                 # (n, n, 1, 1)
    y = np.empty((H - n + 1, W - n + 1, C, B), dtype=x.dtype)
    for i in range(H - n + 1):
        for j in range(W - n + 1):
            win = x[i:i + n, j:j + n]                                      # (n, n, C, B)
            mu = np.sum(wts * win, axis=(0, 1, 2))                         # (B,)
            s = np.sum(wts * (win - mu) ** 2, axis=(0, 1, 2))              # (B,)
            y[i, j] = (x[i + r, j + r] - mu) / np.maximum(floor, np.sqrt(s))
    return y
