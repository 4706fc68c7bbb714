"""Both implementations of the locally connected gradients (layers.lc_kernels' patches and
layers.lc_gradients' batch-major strips) against serial references, at every stride, block
size and accumulate mode; the kernel choice rule and its errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import layers.lc_gradients as lcg
import layers.lc_kernels as lck
from layers.reference import fan_in_index, lc_transpose_reference

KERNELS = ["patches", "batch-major"]
# (H, W, C, B, k, stride, maps): strides below, at and above k's divisors; windows wider than a block
SHAPES = [(9, 11, 2, 3, 3, 1, 4), (12, 13, 3, 2, 4, 2, 3), (10, 16, 1, 5, 5, 3, 2), (8, 8, 2, 2, 8, 1, 2),
          (6, 9, 3, 4, 1, 1, 2), (13, 17, 2, 2, 6, 4, 3), (11, 11, 1, 1, 3, 5, 2)]


def weight_grad_reference(x: np.ndarray, dy: np.ndarray, k: int, s: int) -> np.ndarray:
    """dw[i, j, m, (dj, di, c)] = sum_b dy[i, j, m, b] x[s*i + di, s*j + dj, c, b], in float64."""
    oh, ow, maps, batch = dy.shape
    channels = x.shape[2]
    dw = np.zeros((oh, ow, maps, k * k * channels))
    for di, dj, c in itertools.product(range(k), range(k), range(channels)):
        xs = x[di: di + s * (oh - 1) + 1: s, dj: dj + s * (ow - 1) + 1: s, c]  # (oh, ow, B)
        dw[..., fan_in_index(di, dj, c, k, channels)] = np.einsum("ijmb,ijb->ijm", dy, xs)
    return dw


def case(shape, dtype=np.float64, seed=0):
    H, W, C, B, k, s, M = shape
    rng = np.random.default_rng(seed)
    oh, ow = lck.out_extent(H, k, s), lck.out_extent(W, k, s)
    x = rng.standard_normal((H, W, C, B)).astype(dtype)
    w = rng.standard_normal((oh, ow, M, k * k * C)).astype(dtype)
    dy = rng.standard_normal((oh, ow, M, B)).astype(dtype)
    return x, w, dy, k, s


@pytest.fixture(params=[None, 1], ids=["default-blocks", "one-location-blocks"])
def blocks(request, monkeypatch):
    """The default buffer sizes, or blocks of one location (every edge path)."""
    if request.param is not None:
        monkeypatch.setattr(lcg, "BATCH_MAJOR_BYTES", request.param)
        monkeypatch.setattr(lcg, "POSITION_BYTES", request.param)
        monkeypatch.setattr(lck, "STRIP_BYTES", request.param)
    return request.param


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_weight_gradient_matches_reference(shape, kernel, blocks):
    x, w, dy, k, s = case(shape)
    want = weight_grad_reference(x, dy, k, s)
    np.testing.assert_allclose(lck.lc_weight_grad(x, dy, k, s, kernel=kernel), want, rtol=1e-12, atol=1e-12)
    out = np.ones_like(want)
    lck.lc_weight_grad(x, dy, k, s, out=out, accumulate=True, kernel=kernel)
    np.testing.assert_allclose(out, want + 1.0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_input_gradient_matches_reference(shape, kernel, blocks):
    x, w, dy, k, s = case(shape)
    H, W = x.shape[:2]
    want = lc_transpose_reference(dy, w, (H, W), k, s, 0)
    np.testing.assert_allclose(lck.lc_input_grad(w, dy, k, s, (H, W), kernel=kernel), want, rtol=1e-12, atol=1e-12)
    out = np.full_like(want, 2.0)  # added to, not overwritten
    lck.lc_input_grad(w, dy, k, s, (H, W), out=out, kernel=kernel)
    np.testing.assert_allclose(out, want + 2.0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_float32_kernels_agree_to_rounding(shape):
    x, w, dy, k, s = case(shape, np.float32, seed=1)
    H, W = x.shape[:2]
    a, b = (lck.lc_weight_grad(x, dy, k, s, kernel=name) for name in KERNELS)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    a, b = (lck.lc_input_grad(w, dy, k, s, (H, W), kernel=name) for name in KERNELS)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_batch_major_weight_gradient_bits_do_not_depend_on_the_columns():
    """A column range computed alone gives the same bits as inside the whole row (the
    property that makes the weight gradient the same at any rank count)."""
    x, w, dy, k, s = case((9, 20, 3, 4, 4, 1, 3), np.float32, seed=2)
    whole = lck.lc_weight_grad(x, dy, k, s, kernel="batch-major")
    part = lck.lc_weight_grad(x[:, 5: 5 + 9 + k - 1], dy[:, 5:14], k, s, kernel="batch-major")
    np.testing.assert_array_equal(whole[:, 5:14], part)


def test_kernel_choice_follows_the_measured_rule():
    # weight gradient: batch-major at small batches
    assert lck.choose_kernel("auto", "weight", 18, 1, 3, 8, 32) == "batch-major"
    assert lck.choose_kernel("auto", "weight", 8, 3, 1, 8, 128) == "patches"
    # input gradient: by strip position only for large products (Le et al.'s k = 18)
    assert lck.choose_kernel("auto", "input", 18, 1, 3, 8, 32) == "batch-major"
    assert lck.choose_kernel("auto", "input", 8, 1, 8, 8, 32) == "patches"
    assert lck.choose_kernel("auto", "input", 8, 3, 1, 8, 128) == "patches"
    assert lck.choose_kernel("patches", "weight", 18, 1, 3, 8, 32) == "patches"


def test_unknown_kernel_is_one_clear_error():
    x, w, dy, k, s = case(SHAPES[0])
    with pytest.raises(ValueError, match=r"expected a kernel in \('auto', 'patches', 'batch-major'\), got 'blas'"):
        lck.lc_weight_grad(x, dy, k, s, kernel="blas")
