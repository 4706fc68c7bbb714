"""The loop references themselves: the locally connected layer against an einsum/im2col
formulation and its adjoint, pooling and LCN on hand-computed cases (serial, NumPy)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from layers.reference import (
    fan_in_index,
    l2pool_reference,
    lc_reference,
    lc_transpose_reference,
    lcn_reference,
)

# (H, W, C, B, M, k, stride, padding)
LC_CASES = [
    (7, 9, 2, 3, 4, 3, 1, 0),
    (8, 7, 3, 2, 2, 3, 2, 1),
    (9, 9, 1, 1, 3, 5, 3, 2),
    (6, 5, 2, 2, 1, 1, 1, 0),
    (10, 11, 3, 2, 2, 4, 2, 1),
]


def lc_im2col(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, k: int, stride: int,
              padding: int) -> np.ndarray:
    """The locally connected layer as one einsum over im2col patches, fan-in (dj, di, c)."""
    xpad = np.pad(x, ((padding, padding), (padding, padding), (0, 0), (0, 0)))
    win = sliding_window_view(xpad, (k, k), axis=(0, 1))[::stride, ::stride]  # (oh, ow, C, B, di, dj)
    oh, ow, C, B = win.shape[:4]
    cols = win.transpose(0, 1, 5, 4, 2, 3).reshape(oh, ow, k * k * C, B)      # (oh, ow, K, B)
    y = np.einsum("ijmf,ijfb->ijmb", w, cols)                                 # (oh, ow, M, B)
    return y if b is None else y + b[:, :, :, None]


def random_lc(case, seed: int):
    """Input, weights and bias of one case."""
    H, W, C, B, M, k, stride, padding = case
    rng = np.random.default_rng(seed)
    oh, ow = (H + 2 * padding - k) // stride + 1, (W + 2 * padding - k) // stride + 1
    x = rng.standard_normal((H, W, C, B))
    w = rng.standard_normal((oh, ow, M, k * k * C))
    b = rng.standard_normal((oh, ow, M))
    return x, w, b


def test_fan_in_index_order():
    """Channel fastest, then row offset, column offset slowest."""
    k, C = 3, 4
    assert fan_in_index(0, 0, 1, k, C) == 1
    assert fan_in_index(1, 0, 0, k, C) == C
    assert fan_in_index(0, 1, 0, k, C) == k * C
    assert sorted(fan_in_index(di, dj, c, k, C) for di in range(k) for dj in range(k)
                  for c in range(C)) == list(range(k * k * C))


def test_lc_one_hot_weight_picks_that_input():
    """A weight one-hot at fan_in_index(di, dj, c) copies xpad[s*i + di, s*j + dj, c]."""
    x = np.random.default_rng(0).standard_normal((7, 8, 2, 3))
    k, stride, padding, C = 3, 2, 1, 2
    xpad = np.pad(x, ((1, 1), (1, 1), (0, 0), (0, 0)))
    for di, dj, c in [(0, 2, 1), (2, 0, 0), (1, 1, 1)]:
        w = np.zeros((4, 4, 1, k * k * C))
        w[..., fan_in_index(di, dj, c, k, C)] = 1.0
        y = lc_reference(x, w, None, k, stride, padding)
        for i in range(4):
            for j in range(4):
                np.testing.assert_array_equal(y[i, j, 0], xpad[2 * i + di, 2 * j + dj, c])


@pytest.mark.parametrize("case", LC_CASES)
def test_lc_matches_im2col(case):
    """Loops over output locations agree with the einsum formulation, bias or none."""
    x, w, b = random_lc(case, 1)
    k, stride, padding = case[5:]
    y = lc_reference(x, w, b, k, stride, padding)
    np.testing.assert_allclose(y, lc_im2col(x, w, b, k, stride, padding), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lc_reference(x, w, None, k, stride, padding),
                               lc_im2col(x, w, None, k, stride, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", LC_CASES)
def test_lc_transpose_is_adjoint(case):
    """<lc(x), h> == <x, lc_transpose(h)>."""
    x, w, _ = random_lc(case, 2)
    H, W, _, _, _, k, stride, padding = case
    y = lc_reference(x, w, None, k, stride, padding)
    h = np.random.default_rng(3).standard_normal(y.shape)
    xhat = lc_transpose_reference(h, w, (H, W), k, stride, padding)
    assert xhat.shape == x.shape
    lhs, rhs = np.vdot(y, h), np.vdot(x, xhat)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), np.linalg.norm(y) * np.linalg.norm(h))


def test_lc_shape_errors():
    """Weights or gradients that do not fit the geometry are refused."""
    x = np.zeros((6, 6, 2, 1))
    with pytest.raises(ValueError, match=r"expected w of shape \(4, 4, M, 18\)"):
        lc_reference(x, np.zeros((4, 4, 1, 17)), None, 3, 1, 0)
    with pytest.raises(ValueError, match="expected h with 4x4 locations for input 6x6, got 3x4"):
        lc_transpose_reference(np.zeros((3, 4, 1, 1)), np.zeros((3, 4, 1, 18)), (6, 6), 3, 1, 0)


def test_l2pool_reference_hand_cases():
    """p = 1 is sqrt(eps + x**2); a 2x2 window of (3, 4, 0, 0) gives 5; stride 2 tiles."""
    x = np.random.default_rng(4).standard_normal((3, 4, 2, 2))
    np.testing.assert_allclose(l2pool_reference(x, 1, 1, 0.5), np.sqrt(0.5 + x * x), rtol=1e-15)
    one = np.array([[3.0, 4.0], [0.0, 0.0]])[:, :, None, None]
    assert l2pool_reference(one, 2, 1, 0.0)[0, 0, 0, 0] == 5.0
    assert l2pool_reference(one, 2, 1, 11.0)[0, 0, 0, 0] == 6.0
    tiles = np.arange(16.0).reshape(4, 4, 1, 1)
    want = [[np.sqrt(0 + 1 + 16 + 25), np.sqrt(4 + 9 + 36 + 49)],
            [np.sqrt(64 + 81 + 144 + 169), np.sqrt(100 + 121 + 196 + 225)]]
    np.testing.assert_allclose(l2pool_reference(tiles, 2, 2, 0.0)[:, :, 0, 0], want, rtol=1e-15)


def test_lcn_reference_single_pixel_two_maps():
    """n = 1 over maps (a, b): mu = (a + b)/2, sqrt(S) = |a - b|/2, so y = +-1 unless floored."""
    x = np.array([3.0, 1.0]).reshape(1, 1, 2, 1)
    np.testing.assert_allclose(lcn_reference(x, 1, 1.0, 0.5)[0, 0, :, 0], [1.0, -1.0])
    np.testing.assert_allclose(lcn_reference(x, 1, 1.0, 4.0)[0, 0, :, 0], [0.25, -0.25])


def test_lcn_reference_constant_input_gives_zero():
    """A constant input has no contrast: y is 0 (to rounding)."""
    x = np.full((7, 8, 3, 2), 2.5)
    y = lcn_reference(x, 5, 1.0, 0.1)
    assert y.shape == (3, 4, 3, 2)
    assert np.abs(y).max() < 1e-12


def test_lcn_reference_shift_and_scale_invariant():
    """Adding a constant does not change y; scaling leaves unfloored windows unchanged."""
    x = np.random.default_rng(5).standard_normal((8, 7, 2, 2))
    y = lcn_reference(x, 3, 1.0, 1e-3)
    np.testing.assert_allclose(lcn_reference(x + 7.5, 3, 1.0, 1e-3), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lcn_reference(3.0 * x, 3, 1.0, 1e-3), y, rtol=1e-12, atol=1e-12)


def test_lcn_reference_hand_window():
    """A 3x3 window over one map with a spike at the centre: mu = g_c, S = g_c (1 - g_c)."""
    x = np.zeros((3, 3, 1, 1))
    x[1, 1] = 1.0
    d = np.array([-1.0, 0.0, 1.0])
    g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / 2.0)
    gc = 1.0 / g.sum()                                   # centre weight of the normalised window
    want = (1.0 - gc) / np.sqrt(gc * (1.0 - gc))
    assert lcn_reference(x, 3, 1.0, 1e-3)[0, 0, 0, 0] == pytest.approx(want, rel=1e-14)
