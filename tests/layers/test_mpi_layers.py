"""The layers at 1-4 ranks on every 2-D grid: outputs and gradients against the same layer on
one rank (COMM_SELF), which the serial tests check against the references and finite
differences. Forward outputs, weight and bias gradients are bit-identical to the one-rank
run (each location's GEMMs see the same data); input gradients add contributions from
several ranks in another order and agree to float32 rounding. The locally connected tests
run both gradient kernels (patches and batch-major)."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import comm as _comm
from layers import L2Pooling, LocalContrastNorm, LocallyConnected2D, LocallyConnectedTranspose2D, lc_kernels
from layers.reference import l2pool_reference, lc_reference, lcn_reference

from ..distarray.mpi_helpers import SEED, grid, size

pytestmark = pytest.mark.mpi

GRIDS = [g for g in [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 2), (1, 4), (4, 1)] if g[0] * g[1] == size()]

# (H, W, C, B, k, stride, padding, maps)
LC_CASES = {
    "odd": (9, 11, 2, 3, 3, 1, 0, 4),
    "stride2-pad1": (10, 9, 3, 2, 4, 2, 1, 3),
    "wide-rf": (12, 12, 1, 2, 7, 1, 0, 2),  # the window is wider than a rank's block
    "tiny-blocks": (5, 6, 2, 2, 4, 1, 0, 2),  # 2x3 outputs: blocks of one location, or none
}

_SELF = []


def self_grid() -> da.ProcessGrid:
    """A 1x1 grid on COMM_SELF: this rank alone, the one-rank twin."""
    if not _SELF:
        _SELF.append(da.ProcessGrid((1, 1), comm=_comm.self_comm()))
    return _SELF[0]


def data(shape, seed) -> np.ndarray:
    return da.random_global(shape, seed, "normal", 0.0, 1.0, np.float32)


def twins(cls, *args, **kwargs):
    """The layer on the test grid and on this rank alone, built alike."""
    dims = kwargs.pop("dims")
    return cls(*args, grid=grid(dims), **kwargs), cls(*args, grid=self_grid(), **kwargs)


def run(layer, serial, x_global, dy_global):
    """Forward and backward on both; returns the pairs (distributed gathered, serial)."""
    y = layer.forward(da.from_global(x_global, layer.grid)).allgather()
    dx = layer.backward(da.from_global(dy_global, layer.grid)).allgather()
    ys = serial.forward(da.from_global(x_global, serial.grid)).local
    dxs = serial.backward(da.from_global(dy_global, serial.grid)).local
    return (y, ys), (dx, dxs)


@pytest.fixture(params=["patches", "batch-major"])
def kernel(request, monkeypatch):
    """Both implementations of the gradient kernels (layers.lc_kernels.KERNEL)."""
    monkeypatch.setattr(lc_kernels, "KERNEL", request.param)
    return request.param


@pytest.mark.parametrize("dims", GRIDS)
@pytest.mark.parametrize("name", list(LC_CASES))
def test_locally_connected(dims, name, kernel):
    H, W, C, B, k, s, p, M = LC_CASES[name]
    layer, serial = twins(LocallyConnected2D, (H, W, C), M, k, stride=s, padding=p, seed=SEED, dims=dims)
    bias = data(layer.out_shape, SEED + 1)
    layer.bias.local[...] = bias[layer.bias.layout.box(layer.grid.rank).slices()]
    serial.bias.local[...] = bias
    np.testing.assert_array_equal(layer.weight.allgather(), serial.weight.local)  # seed + location only
    x, dy = data((H, W, C, B), SEED + 2), data(layer.out_shape + (B,), SEED + 3)
    (y, ys), (dx, dxs) = run(layer, serial, x, dy)
    np.testing.assert_array_equal(y, ys)
    ref = lc_reference(x.astype(np.float64), serial.weight.local.astype(np.float64), bias.astype(np.float64), k, s, p)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dxs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.grad_weight.allgather(), serial.grad_weight.local)
    np.testing.assert_array_equal(layer.grad_bias.allgather(), serial.grad_bias.local)


@pytest.mark.parametrize("dims", GRIDS)
@pytest.mark.parametrize("name", list(LC_CASES))
def test_transpose(dims, name, kernel):
    H, W, C, B, k, s, p, M = LC_CASES[name]
    dec, serial = twins(LocallyConnectedTranspose2D, (H, W, C), M, k, stride=s, padding=p, seed=SEED, dims=dims)
    h, g = data(dec.out_shape + (B,), SEED + 4), data((H, W, C, B), SEED + 5)
    xhat = dec.forward(da.from_global(h, dec.grid)).allgather()
    dh = dec.backward(da.from_global(g, dec.grid)).allgather()
    xhats = serial.forward(da.from_global(h, serial.grid)).local
    dhs = serial.backward(da.from_global(g, serial.grid)).local
    np.testing.assert_allclose(xhat, xhats, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(dh, dhs)
    np.testing.assert_array_equal(dec.grad_weight.allgather(), serial.grad_weight.local)


POOL_CASES = {"p3": (9, 11, 3, 2, 3, 1, 0), "p2-stride2-pad1": (10, 9, 2, 3, 2, 2, 1), "wide": (12, 7, 1, 2, 5, 1, 0)}


@pytest.mark.parametrize("dims", GRIDS)
@pytest.mark.parametrize("name", list(POOL_CASES))
def test_l2_pooling(dims, name):
    H, W, C, B, p, s, pad = POOL_CASES[name]
    layer, serial = twins(L2Pooling, (H, W, C), p, stride=s, padding=pad, eps=1e-3, dims=dims)
    x, dy = data((H, W, C, B), SEED + 6), data(layer.out_shape + (B,), SEED + 7)
    (y, ys), (dx, dxs) = run(layer, serial, x, dy)
    np.testing.assert_array_equal(y, ys)
    if pad == 0:
        np.testing.assert_allclose(y, l2pool_reference(x.astype(np.float64), p, s, 1e-3), rtol=1e-5)
    np.testing.assert_allclose(dx, dxs, rtol=1e-5, atol=1e-5)


LCN_CASES = {"n5": (10, 9, 3, 2, 5, 0), "n3": (7, 11, 2, 3, 3, 0), "n3-pad1": (8, 8, 2, 2, 3, 1)}


@pytest.mark.parametrize("dims", GRIDS)
@pytest.mark.parametrize("name", list(LCN_CASES))
def test_local_contrast_norm(dims, name):
    H, W, C, B, n, pad = LCN_CASES[name]
    layer, serial = twins(LocalContrastNorm, (H, W, C), n, floor=0.5, padding=pad, dims=dims)
    x, dy = data((H, W, C, B), SEED + 8), data(layer.out_shape + (B,), SEED + 9)
    (y, ys), (dx, dxs) = run(layer, serial, x, dy)
    np.testing.assert_array_equal(y, ys)
    if pad == 0:
        np.testing.assert_allclose(y, lcn_reference(x.astype(np.float64), n, layer.sigma, 0.5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, dxs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dims", GRIDS)
def test_plans_are_built_once_and_move_only_the_halo(dims):
    layer = LocallyConnected2D((12, 10, 2), 3, 5, grid(dims), seed=SEED)
    x = da.from_global(data((12, 10, 2, 4), SEED), layer.grid)
    layer.forward(x)
    plans = layer.plans(4)
    layer.backward(layer.forward(x))
    assert layer.plans(4) is plans and len(layer._plans) == 1
    own = layer.input_layout(4).box(layer.grid.rank).intersect(plans.box)
    need = int(np.prod(plans.box.shape)) - (int(np.prod(own.shape)) if own is not None else 0)
    assert plans.fetch.bytes_received == need * 4


@pytest.mark.parametrize("dims", GRIDS)
def test_wrong_layout_raises_on_every_rank(dims):
    layer = LocallyConnected2D((9, 9, 2), 3, 3, grid(dims), seed=SEED)
    other = da.zeros((9, 9, 2, 4), layer.grid, split=(1, 0, None, None) if size() > 1 else (None, None, 0, 1))
    with pytest.raises(ValueError, match="expected the input in this layer's layout"):
        layer.forward(other)
