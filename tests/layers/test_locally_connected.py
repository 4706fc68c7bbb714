"""Locally connected filtering on one rank: kernels against the reference, finite-difference
gradients in float64 (input, weight, bias; and the transpose layer), clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
import layers.lc_kernels as lck
from layers import LocallyConnected2D, LocallyConnectedTranspose2D
from layers.reference import lc_reference, lc_transpose_reference

from .gradcheck import check_gradient

# (H, W, C, B, k, stride, padding, maps)
CASES = [
    (7, 9, 2, 3, 3, 1, 0, 4),
    (11, 8, 3, 2, 4, 2, 1, 3),
    (10, 10, 1, 1, 5, 3, 2, 2),
    (6, 6, 2, 2, 6, 1, 0, 1),  # one output location: the window is the whole input
    (5, 7, 3, 4, 1, 1, 0, 2),  # 1x1 windows
]
IDS = ["odd", "stride2-pad1", "stride3-pad2", "full-window", "1x1"]


def serial_grid() -> da.ProcessGrid:
    return da.ProcessGrid((1, 1))


def make(case, dtype=np.float64, seed=3, transpose=False):
    H, W, C, B, k, s, p, M = case
    cls = LocallyConnectedTranspose2D if transpose else LocallyConnected2D
    layer = cls((H, W, C), M, k, serial_grid(), stride=s, padding=p, seed=seed, dtype=dtype)
    return layer


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_forward_matches_reference(case, dtype, tol):
    H, W, C, B, k, s, p, M = case
    rng = np.random.default_rng(0)
    layer = make(case, dtype)
    layer.bias.local[...] = rng.standard_normal(layer.bias.shape)
    x = rng.standard_normal((H, W, C, B)).astype(dtype)
    y = layer.forward(da.from_global(x, layer.grid)).local
    want = lc_reference(x.astype(np.float64), layer.weight.local.astype(np.float64),
                        layer.bias.local.astype(np.float64), k, s, p)
    assert y.dtype == dtype and y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=0, atol=tol * np.abs(want).max() * np.sqrt(k * k * C))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_by_finite_differences(case):
    H, W, C, B, k, s, p, M = case
    rng = np.random.default_rng(1)
    layer = make(case)
    layer.bias.local[...] = rng.standard_normal(layer.bias.shape)
    x = da.from_global(rng.standard_normal((H, W, C, B)), layer.grid)
    dy_global = rng.standard_normal(layer.out_shape + (B,))

    def loss() -> float:
        return float(np.sum(dy_global * layer.forward(x).local))

    loss()
    dx = layer.backward(da.from_global(dy_global, layer.grid)).local
    assert check_gradient(loss, x.local, dx, rng) < 1e-6
    assert check_gradient(loss, layer.weight.local, layer.grad_weight.local.copy(), rng) < 1e-6
    assert check_gradient(loss, layer.bias.local, layer.grad_bias.local.copy(), rng) < 1e-6


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_transpose_is_the_adjoint_and_its_gradients(case):
    H, W, C, B, k, s, p, M = case
    rng = np.random.default_rng(2)
    dec = make(case, transpose=True)
    h = da.from_global(rng.standard_normal(dec.out_shape + (B,)), dec.grid)
    xhat = dec.forward(h).local
    want = lc_transpose_reference(h.local, dec.weight.local, (H, W), k, s, p)
    np.testing.assert_allclose(xhat, want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal((H, W, C, B))

    def loss() -> float:
        return float(np.sum(g * dec.forward(h).local))

    loss()
    dh = dec.backward(da.from_global(g, dec.grid)).local
    assert check_gradient(loss, h.local, dh, rng) < 1e-6
    assert check_gradient(loss, dec.weight.local, dec.grad_weight.local.copy(), rng) < 1e-6


def test_column_blocks_change_nothing(monkeypatch):
    """Cutting a row into cache-sized column blocks gives the same forward and weight
    gradient bits as whole rows (the input gradient adds in another order: rounding)."""
    H, W, C, B, k, s = 9, 23, 2, 3, 3, 2
    rng = np.random.default_rng(4)
    x = rng.standard_normal((H, W, C, B)).astype(np.float32)
    oh, ow = lck.out_extent(H, k, s), lck.out_extent(W, k, s)
    w = rng.standard_normal((oh, ow, 4, k * k * C)).astype(np.float32)
    dy = rng.standard_normal((oh, ow, 4, B)).astype(np.float32)
    whole = (lck.lc_forward(x, w, k, s), lck.lc_weight_grad(x, dy, k, s), lck.lc_input_grad(w, dy, k, s, (H, W)))
    monkeypatch.setattr(lck, "STRIP_BYTES", 1)  # one location per block
    cut = (lck.lc_forward(x, w, k, s), lck.lc_weight_grad(x, dy, k, s), lck.lc_input_grad(w, dy, k, s, (H, W)))
    np.testing.assert_array_equal(whole[0], cut[0])
    np.testing.assert_array_equal(whole[1], cut[1])
    np.testing.assert_allclose(whole[2], cut[2], rtol=1e-5, atol=1e-5)


def test_filters_are_images():
    layer = make((6, 6, 3, 1, 3, 1, 0, 2))
    w = layer.weight.local
    f = layer.filters()
    assert f.shape == (4, 4, 2, 3, 3, 3)
    # filter row di, column dj, channel c is fan-in entry (dj*k + di)*C + c
    assert f[1, 2, 1, 0, 2, 1] == w[1, 2, 1, (2 * 3 + 0) * 3 + 1]


def test_weights_depend_on_seed_only():
    a, b = make(CASES[0], seed=7), make(CASES[0], seed=7)
    np.testing.assert_array_equal(a.weight.local, b.weight.local)
    assert not np.array_equal(a.weight.local, make(CASES[0], seed=8).weight.local)
    assert np.abs(a.weight.local).max() <= 1 / np.sqrt(a.fan_in)


def test_errors_are_clear():
    g = serial_grid()
    with pytest.raises(ValueError, match=r"expected an input height of at least 5 for a 5x5 window with padding 0, got 4"):
        LocallyConnected2D((4, 9, 3), 8, 5, g)
    with pytest.raises(ValueError, match="k >= 1"):
        LocallyConnected2D((4, 9, 3), 8, 0, g)
    with pytest.raises(ValueError, match=r"expected a 2-D process grid"):
        LocallyConnected2D((9, 9, 3), 8, 3, da.ProcessGrid((1,)))
    layer = LocallyConnected2D((9, 9, 3), 8, 3, g)
    with pytest.raises(ValueError, match=r"expected the input of global shape \(9, 9, 3, 'B'\), got \(9, 9, 2, 4\)"):
        layer.forward(da.zeros((9, 9, 2, 4), g))
    with pytest.raises(TypeError, match="expected the input as a DistArray"):
        layer.forward(np.zeros((9, 9, 3, 4), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        layer.forward(da.zeros((9, 9, 3, 4), g, dtype=np.float64))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(da.zeros((7, 7, 8, 4), g))
    layer.forward(da.zeros((9, 9, 3, 4), g))
    with pytest.raises(ValueError, match="batch size 4, got 2"):
        layer.backward(da.zeros((7, 7, 8, 2), g))
    with pytest.raises(ValueError, match="fan-in"):
        lck.lc_forward(np.zeros((9, 9, 3, 2), np.float32), np.zeros((7, 7, 8, 26), np.float32), 3)


def test_weight_gradient_accumulates_when_asked():
    rng = np.random.default_rng(5)
    xb, dy = rng.standard_normal((7, 6, 2, 3)), rng.standard_normal((4, 3, 3, 3))  # k 4: 4 x 3 outputs
    once = lck.lc_weight_grad(xb, dy, 4)
    out = np.ones_like(once)
    lck.lc_weight_grad(xb, dy, 4, out=out, accumulate=True)
    assert np.allclose(out, once + 1.0, rtol=1e-13, atol=1e-13)


def test_tied_layers_share_weights_and_gradient():
    enc = LocallyConnected2D((7, 6, 2), 3, 4, serial_grid(), seed=1, bias=False, dtype=np.float64)
    dec = LocallyConnectedTranspose2D((7, 6, 2), 3, 4, enc.grid, seed=2, dtype=np.float64, tied_to=enc)
    assert dec.weight is enc.weight and dec.grad_weight is enc.grad_weight
    with pytest.raises(ValueError, match="to tie to"):
        LocallyConnectedTranspose2D((7, 6, 2), 2, 4, enc.grid, seed=2, dtype=np.float64, tied_to=enc)


def test_normalise_filters_scales_each_filter_to_the_norm():
    layer = LocallyConnected2D((7, 6, 2), 3, 4, serial_grid(), seed=1, bias=False, dtype=np.float64)
    layer.weight.local[0, 0, 1] = 0.0
    layer.normalise_filters(2.0)
    norms = np.linalg.norm(layer.weight.local, axis=3)
    assert norms[0, 0, 1] == 0.0
    assert np.allclose(np.delete(norms.ravel(), 1), 2.0, rtol=1e-13)
