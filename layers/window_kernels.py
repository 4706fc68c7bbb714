"""Serial window kernels: L2 pooling and local contrast normalisation (LCN), forward and backward.

Every kernel works on one dense local input box ``xb`` laid out (Hb, Wb, C, B): rows, columns,
maps, batch (batch innermost). The box already holds any zero padding; windows never leave it.
The kernels are vectorised over output locations (Python loops run only over window offsets and
maps), take ``xp = get_array_module(xb)`` and call only ``xp.*``, so they run on NumPy and CuPy,
in float32 or float64. Window sums are accumulated in a fixed order (offsets ascending), so a
kernel gives the same bits on every call. An ``out=`` buffer must have the result's shape and
dtype, live on the input's backend and not overlap the inputs; it is filled and returned.

L2 pooling, per map, p x p windows ``stride`` apart::

    y[i, j, c, b] = sqrt(eps + sum_{di, dj < p} xb[stride*i + di, stride*j + dj, c, b]**2)

Local contrast normalisation, stride 1 over "valid" windows, one n x n window per output location
spanning all C maps. With ``g = gaussian_window(n, sigma)`` and ``w[di, dj] = g[di, dj] / C``
(the n*n*C weights sum to 1), for every output (i, j) and batch column b::

    mu    = sum_{di, dj, c} w[di, dj] * xb[i + di, j + dj, c]
    S     = sum_{di, dj, c} w[di, dj] * (xb[i + di, j + dj, c] - mu)**2
    D     = max(floor, sqrt(S))
    y[i, j, c] = (xb[i + r, j + r, c] - mu) / D                     r = n // 2, the window centre

``floor > 0`` is a fixed constant, so D never depends on how the image is split across ranks.
The backward pass takes the derivative through D as zero where sqrt(S) <= floor.

Numerics of LCN: S is never formed as E[x**2] - mu**2, which cancels badly in float32 when the
mean is large beside the spread. With xm[p] and V[p] the mean and variance over maps at input
position p, ``S = sum_{di, dj} g[di, dj] * (V[p] + (xm[p] - mu)**2)`` at p = (i + di, j + dj):
a sum of non-negative terms. The backward pass is split the same way, so adding a constant to
``xb`` changes neither y nor its gradient beyond rounding.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from distarray.backend import get_array_module

__all__ = [
    "l2pool_forward",
    "l2pool_backward",
    "gaussian_window",
    "lcn_forward",
    "lcn_backward",
]


# --------------------------------------------------------------------------- validation


def _check_box(xb: Any) -> None:
    """``xb`` is a 4-D floating-point array laid out (H, W, C, B)."""
    shape = tuple(getattr(xb, "shape", ()))
    if getattr(xb, "ndim", None) != 4:
        raise ValueError(f"expected a 4-D input laid out (H, W, C, B), got shape {shape}")
    if xb.dtype.kind != "f":
        raise TypeError(f"expected a floating-point input (float32 or float64), got {xb.dtype}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``."""
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"expected an integer {name}, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"expected {name} >= {minimum}, got {v}")
    return v


def _check_fits(xb: Any, k: int) -> None:
    """The k x k window fits in the input's H x W."""
    h, w = xb.shape[:2]
    if h < k or w < k:
        raise ValueError(f"expected an input of at least {k}x{k} for a {k}x{k} window, "
                         f"got {h}x{w}")


def _check_shape(name: str, a: Any, shape: tuple[int, ...]) -> None:
    """``a`` has exactly ``shape`` (the (oh, ow, C, B) of the forward output)."""
    got = tuple(getattr(a, "shape", ()))
    if got != shape:
        raise ValueError(f"expected {name} of shape (oh, ow, C, B) = {shape}, got {got}")


def _out(out: Any, shape: tuple[int, ...], like: Any) -> Any:
    """``out`` checked against ``shape`` and ``like``'s dtype and backend, or a new buffer."""
    xp = get_array_module(like)
    if out is None:
        return xp.empty(shape, dtype=like.dtype)
    if get_array_module(out) is not xp:
        raise TypeError(f"expected out on the input's backend ({xp.__name__}), "
                        f"got {type(out).__module__}.{type(out).__name__}")
    if tuple(out.shape) != shape or out.dtype != like.dtype:
        raise ValueError(f"expected out of shape {shape} and dtype {like.dtype}, "
                         f"got shape {tuple(out.shape)} and dtype {out.dtype}")
    return out


def _taps(d: int, count: int, stride: int) -> slice:
    """Input indices ``stride*i + d`` for ``i in range(count)``."""
    return slice(d, d + stride * (count - 1) + 1, stride)


# --------------------------------------------------------------------------- L2 pooling


def _pool_geometry(xb: Any, p: Any, stride: Any) -> tuple[int, int, int, int]:
    """Checked (p, stride, oh, ow) of a pooling of ``xb``."""
    _check_box(xb)
    p = _check_int("pool size p", p, 1)
    stride = _check_int("stride", stride, 1)
    _check_fits(xb, p)
    h, w = xb.shape[:2]
    return p, stride, (h - p) // stride + 1, (w - p) // stride + 1


def l2pool_forward(xb: Any, p: int, stride: int, eps: float, out: Any = None) -> Any:
    """L2 pooling: root of ``eps`` plus the sum of squares over each p x p window, per map.

    Parameters
    ----------
    xb : array (Hb, Wb, C, B)
        Input box, padding included.
    p : int
        Window size (p x p), >= 1.
    stride : int
        Step between windows, >= 1.
    eps : float
        Non-negative constant under the root.
    out : array (oh, ow, C, B), optional
        Buffer for the result.

    Returns
    -------
    array (oh, ow, C, B)
        ``oh = (Hb - p) // stride + 1``, ``ow = (Wb - p) // stride + 1``.
    """
    p, stride, oh, ow = _pool_geometry(xb, p, stride)
    eps = float(eps)
    if not eps >= 0.0:
        raise ValueError(f"expected eps >= 0, got {eps}")
    xp = get_array_module(xb)
    _, wb, c, b = xb.shape
    y = _out(out, (oh, ow, c, b), xb)
    sq = xp.multiply(xb, xb)                                    # (Hb, Wb, C, B)
    rows = xp.empty((oh, wb, c, b), dtype=xb.dtype)             # (oh, Wb, C, B)
    rows[...] = sq[_taps(0, oh, stride)]
    for di in range(1, p):
        rows += sq[_taps(di, oh, stride)]
    y[...] = rows[:, _taps(0, ow, stride)]                      # (oh, ow, C, B)
    for dj in range(1, p):
        y += rows[:, _taps(dj, ow, stride)]
    y += eps
    xp.sqrt(y, out=y)
    return y


def l2pool_backward(xb: Any, y: Any, dy: Any, p: int, stride: int, out: Any = None) -> Any:
    """Gradient of ``sum(dy * l2pool_forward(xb, ...))`` with respect to ``xb``.

    ``dxb[q] = xb[q] * sum over the windows holding q of dy / y``. A window with ``y == 0``
    (all zero, eps = 0) passes no gradient (the zero subgradient of the norm); positions that
    no window covers get 0.

    Parameters
    ----------
    xb : array (Hb, Wb, C, B)
        The forward input.
    y : array (oh, ow, C, B)
        The forward output, from ``l2pool_forward(xb, p, stride, eps)``.
    dy : array (oh, ow, C, B)
        Gradient with respect to ``y``.
    p, stride : int
        As in the forward pass.
    out : array (Hb, Wb, C, B), optional
        Buffer for the result.

    Returns
    -------
    array (Hb, Wb, C, B)
    """
    p, stride, oh, ow = _pool_geometry(xb, p, stride)
    xp = get_array_module(xb)
    _, wb, c, b = xb.shape
    _check_shape("y", y, (oh, ow, c, b))
    _check_shape("dy", dy, (oh, ow, c, b))
    dx = _out(out, xb.shape, xb)
    gy = xp.where(y > 0, y, 1).astype(xb.dtype, copy=False)    # (oh, ow, C, B)
    xp.divide(dy, gy, out=gy)                                   # dL/dy / y
    cols = xp.zeros((oh, wb, c, b), dtype=xb.dtype)             # (oh, Wb, C, B)
    for dj in range(p):
        cols[:, _taps(dj, ow, stride)] += gy
    dx[...] = 0                                                 # (Hb, Wb, C, B)
    for di in range(p):
        dx[_taps(di, oh, stride)] += cols
    dx *= xb
    return dx


# --------------------------------------------------------------------------- LCN


def gaussian_window(n: int, sigma: float) -> np.ndarray:
    """Normalised n x n Gaussian, ``g[di, dj] ∝ exp(-((di - r)**2 + (dj - r)**2) / (2 sigma**2))``.

    Parameters
    ----------
    n : int
        Odd window size, >= 1; the centre is ``r = n // 2``.
    sigma : float
        Standard deviation in pixels, > 0.

    Returns
    -------
    numpy.ndarray (n, n), float64
        Weights summing to 1 (a host array on every backend).
    """
    n = _check_int("window size n", n, 1)
    if n % 2 == 0:
        raise ValueError(f"expected an odd window size n, got {n}")
    sigma = float(sigma)
    if not sigma > 0.0:
        raise ValueError(f"expected sigma > 0, got {sigma}")
    d = np.arange(n, dtype=np.float64) - n // 2                 # (n,)
    g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2.0 * sigma * sigma))  # (n, n)
    return g / g.sum()


def _lcn_setup(xb: Any, n: Any, sigma: Any, floor: Any) -> tuple[list[list[float]], float, int, int]:
    """Checked window weights (as Python floats), floor and output extent (oh, ow)."""
    _check_box(xb)
    g = gaussian_window(n, sigma)
    floor = float(floor)
    if not floor > 0.0:
        raise ValueError(f"expected floor > 0, got {floor}")
    k = g.shape[0]
    _check_fits(xb, k)
    h, w = xb.shape[:2]
    return g.tolist(), floor, h - k + 1, w - k + 1


def _lcn_stats(xb: Any, g: list[list[float]], oh: int, ow: int) -> tuple[Any, Any, Any]:
    """Map mean ``xm`` (Hb, Wb, B) and every window's mean ``mu`` and variance ``S`` (oh, ow, B)."""
    xp = get_array_module(xb)
    c = xb.shape[2]
    xm = xb[:, :, 0, :].copy()                                  # (Hb, Wb, B)
    for ci in range(1, c):
        xm += xb[:, :, ci, :]
    if c > 1:
        xm /= c
        t = xp.empty_like(xm)                                   # (Hb, Wb, B)
        var = xp.zeros_like(xm)                                 # (Hb, Wb, B) variance over maps
        for ci in range(c):
            xp.subtract(xb[:, :, ci, :], xm, out=t)
            t *= t
            var += t
        var /= c
    k = len(g)
    t = xp.empty((oh, ow, xb.shape[3]), dtype=xb.dtype)         # (oh, ow, B) scratch
    mu = xp.zeros_like(t)                                       # (oh, ow, B)
    for di in range(k):
        for dj in range(k):
            xp.multiply(xm[di:di + oh, dj:dj + ow], g[di][dj], out=t)
            mu += t
    s = xp.zeros_like(t)                                        # (oh, ow, B)
    for di in range(k):
        for dj in range(k):
            xp.subtract(xm[di:di + oh, dj:dj + ow], mu, out=t)
            t *= t
            if c > 1:
                t += var[di:di + oh, dj:dj + ow]
            t *= g[di][dj]
            s += t
    return xm, mu, s


def lcn_forward(xb: Any, n: int, sigma: float, floor: float, out: Any = None) -> Any:
    """Local contrast normalisation over n x n x C Gaussian windows (stride 1, valid).

    Parameters
    ----------
    xb : array (Hb, Wb, C, B)
        Input box, padding or halo included.
    n : int
        Odd window size, >= 1.
    sigma : float
        Standard deviation of the Gaussian window in pixels, > 0.
    floor : float
        Lower bound on the divisor, > 0.
    out : array (Hb - n + 1, Wb - n + 1, C, B), optional
        Buffer for the result.

    Returns
    -------
    array (Hb - n + 1, Wb - n + 1, C, B)
        ``(xb[i + r, j + r] - mu) / max(floor, sqrt(S))``; see the module docstring.
    """
    g, floor, oh, ow = _lcn_setup(xb, n, sigma, floor)
    xp = get_array_module(xb)
    r = len(g) // 2
    y = _out(out, (oh, ow) + tuple(xb.shape[2:]), xb)
    _, mu, s = _lcn_stats(xb, g, oh, ow)
    xp.sqrt(s, out=s)
    xp.maximum(s, floor, out=s)                                 # D (oh, ow, B)
    xp.subtract(xb[r:r + oh, r:r + ow], mu[:, :, None, :], out=y)  # (oh, ow, C, B)
    y /= s[:, :, None, :]
    return y


def lcn_backward(xb: Any, dy: Any, n: int, sigma: float, floor: float, out: Any = None) -> Any:
    """Gradient of ``sum(dy * lcn_forward(xb, n, sigma, floor))`` with respect to ``xb``.

    Per window, with v = x_centre - mu, input (p, c) of the window receives
    ``w[p] * (dL/dmu + a * (x[p, c] - mu))`` where ``dL/dmu = -sum_c dy / D`` and
    ``a = -sum_c dy * v / D**3`` where sqrt(S) > floor, else 0 (the path through D is cut).
    These are overlap-added over the windows, plus ``dy / D`` at each window's centre. The term
    ``x - mu`` is split as ``(x - xm) + (xm - mu)`` so no large means cancel.

    Parameters
    ----------
    xb : array (Hb, Wb, C, B)
        The forward input.
    dy : array (Hb - n + 1, Wb - n + 1, C, B)
        Gradient with respect to the forward output.
    n, sigma, floor
        As in the forward pass.
    out : array (Hb, Wb, C, B), optional
        Buffer for the result.

    Returns
    -------
    array (Hb, Wb, C, B)
    """
    g, floor, oh, ow = _lcn_setup(xb, n, sigma, floor)
    xp = get_array_module(xb)
    _, _, c, b = xb.shape
    _check_shape("dy", dy, (oh, ow, c, b))
    dx = _out(out, xb.shape, xb)
    r = len(g) // 2
    xm, mu, s = _lcn_stats(xb, g, oh, ow)
    xp.sqrt(s, out=s)                                           # sigma_ij (oh, ow, B)
    d = xp.maximum(s, floor)                                    # D (oh, ow, B)
    xc = xb[r:r + oh, r:r + ow]                                 # (oh, ow, C, B) centres
    t = xp.empty_like(mu)                                       # (oh, ow, B) scratch
    sdv = xp.zeros_like(mu)                                     # sum_c dy * v
    sdy = xp.zeros_like(mu)                                     # sum_c dy
    for ci in range(c):
        xp.subtract(xc[:, :, ci, :], mu, out=t)
        t *= dy[:, :, ci, :]
        sdv += t
        sdy += dy[:, :, ci, :]
    gm = xp.divide(sdy, d)
    xp.negative(gm, out=gm)                                     # dL/dmu (oh, ow, B)
    a = xp.divide(sdv, d)
    a /= d
    a /= d
    xp.negative(a, out=a)
    a *= s > floor                                              # (oh, ow, B), 0 where floored
    big_a = xp.zeros_like(xm)                                   # (Hb, Wb, B) sum of g * a
    big_e = xp.zeros_like(xm)                                   # (Hb, Wb, B) sum of g * (gm + a (xm - mu))
    for di in range(len(g)):
        for dj in range(len(g)):
            win = (slice(di, di + oh), slice(dj, dj + ow))
            xp.multiply(a, g[di][dj], out=t)
            big_a[win] += t
            xp.subtract(xm[win], mu, out=t)
            t *= a
            t += gm
            t *= g[di][dj]
            big_e[win] += t
    if c > 1:
        big_a /= c
        big_e /= c
    xp.subtract(xb, xm[:, :, None, :], out=dx)                  # (Hb, Wb, C, B)
    dx *= big_a[:, :, None, :]
    dx += big_e[:, :, None, :]
    dx[r:r + oh, r:r + ow] += dy / d[:, :, None, :]
    return dx
