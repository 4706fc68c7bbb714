"""The serial kernels on CuPy arrays against the same kernels on NumPy arrays: locally
connected filtering (both gradient implementations) and the pooling and LCN windows."""

from __future__ import annotations

import numpy as np
import pytest

import layers.lc_kernels as lck
from layers import window_kernels as wk

from .gpu_helpers import needs_gpu, rel_err, to_device

pytestmark = [pytest.mark.gpu, needs_gpu]

# (H, W, C, B, k, stride, maps)
SHAPES = [(12, 13, 3, 4, 4, 1, 4), (20, 20, 3, 8, 8, 3, 8), (30, 30, 3, 32, 18, 1, 8)]


def data(shape, seed=0):
    H, W, C, B, k, s, M = shape
    rng = np.random.default_rng(seed)
    oh, ow = lck.out_extent(H, k, s), lck.out_extent(W, k, s)
    x = rng.standard_normal((H, W, C, B), dtype=np.float32)
    w = rng.standard_normal((oh, ow, M, k * k * C), dtype=np.float32)
    dy = rng.standard_normal((oh, ow, M, B), dtype=np.float32)
    return x, w, dy, k, s


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", ["patches", "batch-major"])
def test_locally_connected_on_the_gpu_matches_numpy(shape, kernel):
    x, w, dy, k, s = data(shape)
    H, W = x.shape[:2]
    xg, wg, dyg = to_device(x), to_device(w), to_device(dy)
    assert rel_err(lck.lc_forward(xg, wg, k, s), lck.lc_forward(x, w, k, s)) < 1e-5
    assert rel_err(lck.lc_weight_grad(xg, dyg, k, s, kernel=kernel), lck.lc_weight_grad(x, dy, k, s, kernel=kernel)) < 1e-5
    assert rel_err(lck.lc_input_grad(wg, dyg, k, s, (H, W), kernel=kernel),
                   lck.lc_input_grad(w, dy, k, s, (H, W), kernel=kernel)) < 1e-5


def test_window_kernels_on_the_gpu_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((15, 14, 4, 6), dtype=np.float32)
    xg = to_device(x)
    y, yg = wk.l2pool_forward(x, 3, 1, 1e-3), wk.l2pool_forward(xg, 3, 1, 1e-3)
    assert rel_err(yg, y) < 1e-5
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    assert rel_err(wk.l2pool_backward(xg, yg, to_device(dy), 3, 1), wk.l2pool_backward(x, y, dy, 3, 1)) < 1e-5
    z, zg = wk.lcn_forward(x, 5, 1.25, 0.1), wk.lcn_forward(xg, 5, 1.25, 0.1)
    assert rel_err(zg, z) < 1e-5
    dz = rng.standard_normal(z.shape, dtype=np.float32)
    assert rel_err(wk.lcn_backward(xg, to_device(dz), 5, 1.25, 0.1), wk.lcn_backward(x, dz, 5, 1.25, 0.1)) < 1e-4
