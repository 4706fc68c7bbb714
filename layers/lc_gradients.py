"""The two gradient passes of locally connected filtering on batch-major strips (serial).

:mod:`layers.lc_kernels` computes both gradients from per-location patches, (K x B)
matrices with the batch innermost. Its products are too small for BLAS to amortise its
packing (the weight gradient sums over the batch of 32 only), and its input gradient pays
an overlap-add of k patch columns per location that costs as much as the product. This
module removes both costs by laying the strip of one output row out batch-major,
``V[b, q, di, c] = xb[s*i + di, q, c, b]``, so that every operand is a plain strided matrix:

- weight gradient: location j's transposed patch ``P_j^T`` (B x K) is the contiguous run
  ``V[:, s*j : s*j + k]`` of every batch row (K index ``(dj*k + di)*C + c``), so
  ``dw[i, j] = dy[i, j] (M x B) @ P_j^T`` is one batched ``matmul`` per row written straight
  into ``dw`` (no patch copies, no transposed temporary);
- input gradient, "by strip position": instead of forming each location's patch gradient
  and overlap-adding it, strip column q gathers every (location, filter column) pair that
  lands on it, ``q = s*j + dj``. With T = ceil(k/s) such pairs at most,

      dV[:, q] (B x kC) = D_q (B x T*M) @ L_q (T*M x kC)

  where ``D_q`` is a contiguous window of T locations of the output gradient (batch-major)
  and ``L_q`` the matching filter columns, rearranged from the weights once per row. The
  sum over the T*M rows happens inside BLAS, so there is no overlap-add, and the GEMM's
  inner dimension is T*M instead of M.

Both agree with the patch kernels to float rounding (the tests run both). The weight
gradient is the same bits at any column range (each element is one dot over the batch), so
results do not depend on how locations are split over ranks; the input gradient's sums are
ordered differently, as the patch kernels' are across ranks (their overlap-adds are).
Measured in benchmarks/bench_layers.py; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

from typing import Any

from distarray.backend import get_array_module

__all__ = ["weight_grad_batch_major", "input_grad_by_position", "column_blocks", "BATCH_MAJOR_BYTES", "POSITION_BYTES"]

BATCH_MAJOR_BYTES = 1 << 20  # a row's batch-major strip is cut into column blocks of about this size
POSITION_BYTES = 1 << 23  # and its rearranged filters (whole rows measured fastest: fewer edges)


def _strided(xp: Any, base: Any, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any:
    """A view of the flat contiguous ``base`` at element ``offset``, strides in elements."""
    item = base.itemsize
    return xp.lib.stride_tricks.as_strided(base.reshape(-1)[offset:], shape=shape,
                                           strides=tuple(st * item for st in strides))


def column_blocks(n: int, per_col: int, stride: int, budget: int) -> list[tuple[int, int]]:
    """Blocks [j0, j1) of ``n`` locations whose buffers hold about ``budget`` bytes."""
    step = max(1, budget // max(1, per_col * stride))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def weight_grad_batch_major(xb: Any, dy: Any, k: int, stride: int, out: Any, accumulate: bool) -> Any:
    """``out[i, j] (M x K) = dy[i, j] @ P_j^T`` (or ``+=`` with ``accumulate``).

    ``xb`` (Hb, Wb, C, B) is the input box as :func:`layers.lc_kernels.lc_weight_grad` takes
    it, ``dy`` (oh, ow, M, B), ``out`` (oh, ow, M, K), all checked by the caller.
    """
    xp = get_array_module(xb)
    oh, ow, maps, batch = dy.shape
    channels = xb.shape[2]
    kc = k * channels
    kk = k * kc
    s = stride
    xt = xp.ascontiguousarray(xb.transpose(3, 1, 0, 2))  # (B, Wb, Hb, C): strips are block copies
    blocks = column_blocks(ow, kc * batch * xb.itemsize, s, BATCH_MAJOR_BYTES)
    width = blocks[0][1] - blocks[0][0]
    buf = xp.empty(batch * (s * (width - 1) + k) * kc, dtype=xb.dtype)
    tmp = xp.empty((width, maps, kk), dtype=xb.dtype) if accumulate else None  # (n, M, K)
    for i in range(oh):
        for j0, j1 in blocks:
            n = j1 - j0
            nq = s * (n - 1) + k
            strip = buf[: batch * nq * kc].reshape(batch, nq, k, channels)  # (B, nq, k, C)
            strip[...] = xt[:, s * j0: s * j0 + nq, s * i: s * i + k]
            pt = _strided(xp, strip, 0, (n, batch, kk), (s * kc, nq * kc, 1))  # (n, B, K) views
            if accumulate:
                xp.matmul(dy[i, j0:j1], pt, out=tmp[:n])
                out[i, j0:j1] += tmp[:n]
            else:
                xp.matmul(dy[i, j0:j1], pt, out=out[i, j0:j1])  # (n, M, B) @ (n, B, K)
    return out


def _pieces(nu: int, n: int, tt: int) -> list[tuple[int, int]]:
    """Ranges of strip positions u (of one residue) cut where the number of valid pairs
    changes fastest: the left edge [0, T-1) and right edge [n, nu) in halves, the middle whole."""
    cuts = {0, nu, min(nu, tt - 1), min(nu, (tt - 1) // 2), min(nu, n), min(nu, n + max(0, nu - n) // 2)}
    points = sorted(cuts)
    return [(a, b) for a, b in zip(points, points[1:]) if b > a]


def _row_input_grad(xp: Any, w: Any, dy: Any, k: int, s: int, lbuf: Any, dyt: Any, dv: Any) -> None:
    """One block of one row: the batch-major strip gradient ``dv`` (B, nq, k, C) of
    ``w`` (n, M, K) and ``dy`` (n, M, B); ``lbuf`` holds zeros wherever no weight lands."""
    n, maps, kk = w.shape
    batch = dy.shape[2]
    kc = kk // k
    tt = -(-k // s)  # T: (location, filter column) pairs per strip position, at most
    nq = dv.shape[1]
    tmk = tt * maps * kc
    # rearrange: L[q, a] = w[j, :, dj] for q = s*j + dj, a = T-1 - dj//s (locations ascending in a)
    w4 = w.reshape(n, maps, k, kc)
    for rho in range(min(s, k)):
        na = -(-(k - rho) // s)
        dest = _strided(xp, lbuf, rho * tmk + (tt - 1) * maps * kc, (n, na, maps, kc),
                        (s * tmk, s * tmk - maps * kc, kc, 1))
        dest[...] = w4[:, :, rho::s].transpose(0, 2, 1, 3)
    dyt[:, tt - 1: tt - 1 + n] = dy.transpose(2, 0, 1)  # (B, n + 2(T-1), M), zero margins
    row = dyt.shape[1] * maps
    for rho in range(min(s, nq)):
        nu = (nq - 1 - rho) // s + 1
        a_min = tt - 1 - (k - 1 - rho) // s  # rows below never hold a weight for this residue
        for u0, u1 in _pieces(nu, n, tt):
            a0 = max(a_min, tt - 1 - (u1 - 1))
            a1 = min(tt, n + tt - 1 - u0)
            out = _strided(xp, dv, (s * u0 + rho) * kc, (u1 - u0, batch, kc), (s * kc, nq * kc, 1))
            if a1 <= a0:
                out[...] = 0
                continue
            rows = (a1 - a0) * maps
            d = _strided(xp, dyt, (u0 + a0) * maps, (u1 - u0, batch, rows), (maps, row, 1))  # (nu, B, rows)
            lq = _strided(xp, lbuf, (s * u0 + rho) * tmk + a0 * maps * kc, (u1 - u0, rows, kc),
                          (s * tmk, kc, 1))  # (nu, rows, kC)
            xp.matmul(d, lq, out=out)


def input_grad_by_position(w: Any, dy: Any, k: int, stride: int, out: Any) -> Any:
    """Add the input gradient of ``w`` (oh, ow, M, K) and ``dy`` (oh, ow, M, B) into
    ``out`` (Hb, Wb, C, B), strip position by strip position (all checked by the caller)."""
    xp = get_array_module(w)
    oh, ow, maps, kk = w.shape
    batch = dy.shape[3]
    kc = kk // k
    channels = kc // k
    s = stride
    tt = -(-k // s)
    blocks = column_blocks(ow, tt * maps * kc * w.itemsize * s, 1, POSITION_BYTES)
    width = blocks[0][1] - blocks[0][0]
    nq_max = s * (width - 1) + k
    lbuf = xp.empty(nq_max * tt * maps * kc, dtype=w.dtype)  # (nq, T, M, kC) rearranged filters
    dytbuf = xp.empty(batch * (width + 2 * (tt - 1)) * maps, dtype=w.dtype)  # (B, n + 2(T-1), M)
    dvbuf = xp.empty(batch * nq_max * kc, dtype=w.dtype)
    zeroed_width = None  # the block width the zero slots of lbuf and dyt were laid out for
    for i in range(oh):
        for j0, j1 in blocks:
            n = j1 - j0
            nq = s * (n - 1) + k
            dyt = dytbuf[: batch * (n + 2 * (tt - 1)) * maps].reshape(batch, n + 2 * (tt - 1), maps)
            if zeroed_width != n:  # entries no weight lands on are zero, for this width
                lbuf[...] = 0
                dyt[...] = 0
                zeroed_width = n
            dv = dvbuf[: batch * nq * kc].reshape(batch, nq, k, channels)  # (B, nq, k, C)
            _row_input_grad(xp, w[i, j0:j1], dy[i, j0:j1], k, s, lbuf[: nq * tt * maps * kc],
                            dyt, dv)
            q0 = s * j0
            out[s * i: s * i + k, q0: q0 + nq] += dv.transpose(2, 1, 3, 0)
    return out
