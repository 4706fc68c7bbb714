"""Locally connected filtering on one rank's dense input box, as batched small GEMMs (serial).

Activations are (H, W, C, B): rows, columns, channels, batch innermost. Output location
(i, j) has its own weights ``w[i, j]`` of shape (M, K), K = k*k*C, and computes

    y[i, j] (M x B) = w[i, j] (M x K) @ patch(i, j) (K x B)

The fan-in index runs over (dj, di, c), column offset slowest and channel fastest:
``K index = (dj*k + di)*C + c``. With that order no patch is ever copied on its own. For
one output row ``i`` the kernels copy the k input rows it reads, column-major, into a
strip ``U[q, di, c, b] = xb[s*i + di, q, c, b]`` (one copy of k*Wb*C*B values, shared by
all locations of the row); the patch of location j is then the contiguous run
``U[s*j : s*j + k]``, a (K x B) matrix, and the patches of a row are one strided view
with a batch stride of ``s*k*C*B``. Each row (or a cache-sized block of its columns) is
one batched ``matmul``: forward ``w @ P``, weight gradient ``dy @ P^T``, input gradient
``w^T @ dy`` followed by the overlap-add of the patches back into the strip. The full
im2col of the layer is never built.

The two gradients have a second implementation in :mod:`layers.lc_gradients` (batch-major
strips: BLAS on plain strided matrices, no overlap-add), which is faster where the batch is
small and the filters large (Le et al.'s shapes). ``kernel="auto"`` (the default, or the
module's ``KERNEL``) picks per call by the rule in :func:`choose_kernel`, measured in
benchmarks/bench_layers.py; ``"patches"`` and ``"batch-major"`` force one. Both agree to
float rounding; the tests run both.

All functions take the input box ``xb`` exactly as the outputs need it: row s*i + di of
``xb`` is input row s*i + di of the (padded) window of output row i, so ``Hb = s*(oh-1) +
k`` at least. Padding is whatever zeros the box already holds.
"""

from __future__ import annotations

from typing import Any

from distarray.backend import get_array_module

from .lc_gradients import column_blocks, input_grad_by_position, weight_grad_batch_major

__all__ = ["fan_in", "out_extent", "lc_forward", "lc_weight_grad", "lc_input_grad", "choose_kernel",
           "KERNELS", "KERNEL", "STRIP_BYTES"]

STRIP_BYTES = 1 << 19  # a row's strip is cut into column blocks of about this size (L2-sized)
KERNELS = ("auto", "patches", "batch-major")
KERNEL = "auto"  # the default of every call; tests and benchmarks may set it


def choose_kernel(kernel: str | None, pass_: str, k: int, stride: int, channels: int, maps: int,
                  batch: int) -> str:
    """``"patches"`` or ``"batch-major"`` for the gradient ``pass_`` ("weight" or "input").

    ``"auto"`` follows benchmarks/bench_layers.py on one core (docs/benchmarks.md): the
    batch-major weight gradient wins at batch 32 on every shape measured (2.5x at Le et al.'s)
    and loses at 128, where the patch form's inner dimension is long enough; the input
    gradient by strip position wins only when its products are large, T*M >= 96 rows
    (T = ceil(k/stride)) and k*C >= 48 columns (Le et al.'s k = 18 stages, 1.1-1.2x).
    """
    kernel = KERNEL if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"expected a kernel in {KERNELS}, got {kernel!r}")
    if kernel != "auto":
        return kernel
    if pass_ == "weight":
        return "batch-major" if batch <= 64 else "patches"
    return "batch-major" if -(-k // stride) * maps >= 96 and k * channels >= 48 else "patches"


def fan_in(k: int, channels: int) -> int:
    """K = k*k*C, the length of one location's filter."""
    return k * k * channels


def out_extent(extent: int, k: int, stride: int) -> int:
    """Output locations along an axis of ``extent`` input positions (no padding)."""
    return (extent - k) // stride + 1 if extent >= k else 0


def _check(xb: Any, w: Any, k: int, stride: int) -> tuple[int, int, int, int]:
    """Validate the box and weights; returns (oh, ow, M, C)."""
    if xb.ndim != 4:
        raise ValueError(f"expected an input box of shape (H, W, C, B), got shape {tuple(xb.shape)}")
    if w.ndim != 4:
        raise ValueError(f"expected weights of shape (oh, ow, M, K), got shape {tuple(w.shape)}")
    oh, ow, maps, kk = w.shape
    channels = xb.shape[2]
    if kk != fan_in(k, channels):
        raise ValueError(
            f"expected weights with fan-in K = k*k*C = {k}*{k}*{channels} = {fan_in(k, channels)}, got {kk}"
        )
    need = (stride * (oh - 1) + k, stride * (ow - 1) + k)
    if oh and ow and (xb.shape[0] < need[0] or xb.shape[1] < need[1]):
        raise ValueError(
            f"expected an input box of at least {need[0]}x{need[1]} for {oh}x{ow} outputs "
            f"(k={k}, stride={stride}), got {xb.shape[0]}x{xb.shape[1]}"
        )
    if xb.dtype != w.dtype:
        raise ValueError(f"expected weights of the input's dtype {xb.dtype}, got {w.dtype}")
    return oh, ow, maps, channels


def _blocks(cols: tuple[int, int], row_bytes_per_col: int, stride: int) -> list[tuple[int, int]]:
    """Column blocks of [j0, j1) whose strips hold about STRIP_BYTES."""
    j0, j1 = cols
    return [(j0 + a, j0 + b) for a, b in column_blocks(j1 - j0, row_bytes_per_col, stride, STRIP_BYTES)]


def _strip(xb: Any, i: int, j0: int, j1: int, k: int, stride: int, buf: Any) -> Any:
    """The strip of output row i, columns [j0, j1): U (nq, k, C, B), copied into ``buf``."""
    q0, q1 = stride * j0, stride * (j1 - 1) + k
    strip = buf[: q1 - q0]  # (nq, k, C, B)
    strip[...] = xb[stride * i: stride * i + k, q0:q1].transpose(1, 0, 2, 3)
    return strip


def _patches(xp: Any, strip: Any, n: int, stride: int) -> Any:
    """The n patches in a strip as one strided view (n, K, B); no copy."""
    nq, k, channels, batch = strip.shape
    item = strip.itemsize
    return xp.lib.stride_tricks.as_strided(
        strip, shape=(n, k * k * channels, batch),
        strides=(stride * k * channels * batch * item, batch * item, item),
    )


def _strip_buffer(xp: Any, xb: Any, k: int, stride: int, ow: int) -> tuple[Any, int]:
    """A strip buffer for any column block, and the bytes one column of a strip takes."""
    channels, batch = xb.shape[2], xb.shape[3]
    per_col = k * channels * batch * xb.itemsize
    width = min(ow, max(1, STRIP_BYTES // max(1, per_col * stride)))
    return xp.empty((stride * (width - 1) + k, k, channels, batch), dtype=xb.dtype), per_col


def _row_patches(xp: Any, xb: Any, rows: tuple[int, int], cols: tuple[int, int], k: int, stride: int):
    """Yield (i, j0, j1, patches (n, K, B)) for each output row of ``rows`` and each
    cache-sized block [j0, j1) of ``cols``; the patches view one reused strip buffer."""
    buf, per_col = _strip_buffer(xp, xb, k, stride, cols[1] - cols[0])
    for i in range(*rows):
        for j0, j1 in _blocks(cols, per_col, stride):
            yield i, j0, j1, _patches(xp, _strip(xb, i, j0, j1, k, stride, buf), j1 - j0, stride)


def lc_forward(xb: Any, w: Any, k: int, stride: int = 1, bias: Any = None, out: Any = None) -> Any:
    """Forward pass: ``y[i, j] = w[i, j] @ patch(i, j) + bias[i, j]``.

    Parameters
    ----------
    xb : array (Hb, W b, C, B)
        Input box, padding included.
    w : array (oh, ow, M, K)
        Weights, fan-in ordered (dj, di, c).
    k, stride : int
        Receptive field and stride.
    bias : array (oh, ow, M), optional
    out : array (oh, ow, M, B), optional
        Written in place.

    Returns
    -------
    array (oh, ow, M, B)
    """
    xp = get_array_module(xb)
    oh, ow, maps, channels = _check(xb, w, k, stride)
    batch = xb.shape[3]
    if out is None:
        out = xp.empty((oh, ow, maps, batch), dtype=xb.dtype)  # (oh, ow, M, B)
    rows, cols = (0, oh), (0, ow)
    if not oh or not ow:
        return out
    for i, j0, j1, patches in _row_patches(xp, xb, rows, cols, k, stride):
        xp.matmul(w[i, j0:j1], patches, out=out[i, j0:j1])  # (n, M, B)
        if bias is not None:
            out[i, j0:j1] += bias[i, j0:j1, :, None]
    return out


def lc_weight_grad(xb: Any, dy: Any, k: int, stride: int = 1, out: Any = None, accumulate: bool = False,
                   kernel: str | None = None) -> Any:
    """Weight gradient: ``dw[i, j] = dy[i, j] @ patch(i, j)^T``, shape (oh, ow, M, K).

    ``out`` (oh, ow, M, K) is overwritten, or added to with ``accumulate`` (tied weights:
    the decoder's part, then the encoder's). ``kernel``: see :func:`choose_kernel`.
    """
    xp = get_array_module(xb)
    oh, ow, maps, batch = dy.shape
    if out is None:
        out = xp.empty((oh, ow, maps, fan_in(k, xb.shape[2])), dtype=xb.dtype)  # (oh, ow, M, K)
    _check(xb, out, k, stride)
    rows, cols = (0, oh), (0, ow)
    if not oh or not ow:
        return out
    if choose_kernel(kernel, "weight", k, stride, xb.shape[2], maps, batch) == "batch-major":
        return weight_grad_batch_major(xb, dy, k, stride, out, accumulate)
    tmp = None
    for i, j0, j1, patches in _row_patches(xp, xb, rows, cols, k, stride):
        if tmp is None:
            tmp = xp.empty((patches.shape[0], patches.shape[1], maps), dtype=xb.dtype)  # (n, K, M)
        # (n, K, B) @ (n, B, M) into a contiguous buffer (BLAS writes it directly; a
        # transposed out= view would make NumPy go through a temporary), then transposed
        xp.matmul(patches, dy[i, j0:j1].transpose(0, 2, 1), out=tmp[: j1 - j0])
        if accumulate:
            out[i, j0:j1] += tmp[: j1 - j0].transpose(0, 2, 1)  # (n, M, K)
        else:
            out[i, j0:j1] = tmp[: j1 - j0].transpose(0, 2, 1)
    return out


def lc_input_grad(w: Any, dy: Any, k: int, stride: int, box_hw: tuple[int, int], out: Any = None,
                  kernel: str | None = None) -> Any:
    """Input gradient: the overlap-add of ``w[i, j]^T @ dy[i, j]`` over the input box.

    This is also the transposed (decoder) layer's forward pass. ``box_hw`` is (Hb, Wb).
    ``out`` (Hb, Wb, C, B), if given, is added to (not overwritten); a new one starts at zero.
    ``kernel``: see :func:`choose_kernel`.
    """
    xp = get_array_module(w)
    oh, ow, maps, kk = w.shape
    batch = dy.shape[3]
    if tuple(dy.shape[:3]) != (oh, ow, maps):
        raise ValueError(f"expected output gradients of shape ({oh}, {ow}, {maps}, B), got {tuple(dy.shape)}")
    channels = kk // (k * k)
    if channels * k * k != kk:
        raise ValueError(f"expected a fan-in that is a multiple of k*k = {k * k}, got {kk}")
    if out is None:
        out = xp.zeros((box_hw[0], box_hw[1], channels, batch), dtype=w.dtype)  # (Hb, Wb, C, B)
    _check(out, w, k, stride)
    rows, cols = (0, oh), (0, ow)
    if not oh or not ow:
        return out
    if choose_kernel(kernel, "input", k, stride, channels, maps, batch) == "batch-major":
        return input_grad_by_position(w, dy, k, stride, out)
    strip, per_col = _strip_buffer(xp, out, k, stride, cols[1] - cols[0])
    width = (strip.shape[0] - k) // stride + 1
    dpatch = xp.empty((width, k, k * channels * batch), dtype=w.dtype)  # (n, k(dj), k*C*B)
    for i in range(*rows):
        for j0, j1 in _blocks(cols, per_col, stride):
            n = j1 - j0
            nq = stride * (n - 1) + k
            flat = dpatch[:n]
            xp.matmul(w[i, j0:j1].transpose(0, 2, 1), dy[i, j0:j1],
                      out=flat.reshape(n, kk, batch))  # (n, K, B)
            acc = strip[:nq].reshape(nq, k * channels * batch)  # (nq, k*C*B)
            acc[...] = 0
            for dj in range(k):  # overlap-add, dj ascending: deterministic
                acc[dj: dj + stride * (n - 1) + 1: stride] += flat[:, dj]
            q0 = stride * j0
            out[stride * i: stride * i + k, q0: q0 + nq] += strip[:nq].transpose(1, 0, 2, 3)
    return out
