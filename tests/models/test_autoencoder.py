"""The sparse-autoencoder objective and the network on one rank: the objective against a
direct NumPy evaluation through the layer references, and every gradient against central
finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import comm
from layers.reference import l2pool_reference, lc_reference, lc_transpose_reference
from models.autoencoder import SparseAutoencoder
from models.config import StageSpec
from models.network import Network

from ..layers.gradcheck import check_gradient

GRID: list = []
H = 1e-5  # the objective sums O(100) terms: smaller steps lose the difference to rounding


def self_grid() -> da.ProcessGrid:
    if not GRID:
        GRID.append(da.ProcessGrid((1, 1), comm=comm.self_comm()))
    return GRID[0]


def stage(bias=False, lam=0.1, dtype=np.float64, shape=(9, 8, 2), maps=3, k=4, pool=2, stride=1):
    return SparseAutoencoder(shape, maps, k, pool, self_grid(), lam=lam, eps=1e-3, stride=stride, seed=5,
                             bias=bias, dtype=dtype)


def batch(shape, b=3, seed=1, dtype=np.float64):
    x = np.random.default_rng(seed).standard_normal(tuple(shape) + (b,)).astype(dtype)  # (H, W, C, B)
    return da.from_global(x, self_grid(), split=(0, 1, None, None))


def test_objective_matches_references():
    ae = stage(bias=True)
    ae.encoder.bias.local[...] = np.random.default_rng(3).standard_normal(ae.encoder.bias.local.shape)
    x = batch(ae.in_shape)
    xg = x.local.copy()
    losses, pooled = ae.forward(x)
    w1, b1, w2 = ae.encoder.weight.local, ae.encoder.bias.local, ae.decoder.weight.local
    z = lc_reference(xg, w1, b1, 4, 1, 0)  # (oh, ow, M, B)
    xhat = lc_transpose_reference(z, w2, xg.shape[:2], 4, 1, 0)  # (H, W, C, B)
    p = l2pool_reference(z, 2, 1, 1e-3)
    assert np.allclose(pooled.local, p, rtol=1e-12, atol=1e-12)
    assert losses.reconstruction == pytest.approx(np.sum((xhat - xg) ** 2) / 3, rel=1e-12)
    assert losses.sparsity == pytest.approx(0.1 * np.sum(p) / 3, rel=1e-12)
    assert losses.total == pytest.approx(losses.reconstruction + losses.sparsity)


@pytest.mark.parametrize("bias,stride", [(False, 1), (True, 1), (False, 2)])
def test_parameter_gradients_match_finite_differences(bias, stride):
    ae = stage(bias=bias, stride=stride)
    x = batch(ae.in_shape)

    def loss() -> float:
        return ae.forward(x)[0].total

    loss()
    ae.backward()
    rng = np.random.default_rng(0)
    for name, param in ae.parameters().items():
        grad = ae.gradients()[name].local.copy()
        assert np.abs(grad).max() > 0, name
        assert check_gradient(loss, param.local, grad, rng, h=H) < 1e-6, name


def test_gradient_from_above_and_input_gradient():
    """backward(dp, input_grad=True) is the gradient of J + sum(dp * p), inputs included."""
    ae = stage()
    x = batch(ae.in_shape)
    dp_global = np.random.default_rng(4).standard_normal(ae.out_shape + (3,))
    dp = da.from_global(dp_global, self_grid(), split=(0, 1, None, None))

    def loss() -> float:
        losses, pooled = ae.forward(x)
        return losses.total + float(np.sum(dp_global * pooled.local))

    loss()
    dx = ae.backward(dp, input_grad=True)
    rng = np.random.default_rng(1)
    assert check_gradient(loss, x.local, dx.local.copy(), rng, h=H) < 1e-6
    for name, param in ae.parameters().items():
        loss()
        ae.backward(dp)
        grad = ae.gradients()[name].local.copy()
        assert check_gradient(loss, param.local, grad, rng, h=H) < 1e-6, name


def test_backward_before_forward_and_lambda_errors():
    ae = stage()
    with pytest.raises(RuntimeError, match="before forward"):
        ae.backward()
    with pytest.raises(ValueError, match="lambda >= 0"):
        stage(lam=-1.0)


def test_sparsity_weight_zero_is_plain_reconstruction():
    ae = stage(lam=0.0)
    losses, _ = ae.forward(batch(ae.in_shape))
    assert losses.sparsity == 0.0 and losses.reconstruction > 0


def network(dtype=np.float64):
    specs = [StageSpec(4, 3, 2, 3, lam=0.1, eps=1e-3), StageSpec(3, 2, 2, 0, lam=0.2, eps=1e-3)]
    return Network((12, 11, 2), specs, self_grid(), seed=3, dtype=dtype)


def test_network_shapes_and_parameters():
    net = network()
    # 12x11 -> LC 4 -> 9x8 -> pool 2 -> 8x7 -> LCN 3 -> 6x5 -> LC 3 -> 4x3 -> pool 2 -> 3x2 (no LCN)
    assert net.shapes() == [(12, 11, 2), (9, 8, 3), (8, 7, 3), (6, 5, 3), (4, 3, 2), (3, 2, 2)]
    assert net.output_shape == (3, 2, 2)
    counts = net.parameter_count()
    assert counts["encoder"] == 9 * 8 * 3 * 32 + 4 * 3 * 2 * 27 == counts["decoder"]
    assert sorted(net.parameters()) == ["stage0.decoder.weight", "stage0.encoder.weight",
                                        "stage1.decoder.weight", "stage1.encoder.weight"]
    assert net.stages[0].encoder.weight.local.tolist() != net.stages[1].encoder.weight.local.tolist()


def test_network_stage_reads_the_normalised_output_below():
    net = network()
    x = batch(net.input_shape, b=2)
    losses = net.forward(x, [1])
    below = net.features(x, stages=1)
    alone, _ = net.stages[1].forward(below)
    assert set(losses) == {1}
    assert losses[1] == alone


def test_network_gradients_of_each_stage_objective():
    net = network()
    x = batch(net.input_shape, b=2)

    def loss() -> float:
        return sum(l.total for l in net.forward(x, [0, 1]).values())

    loss()
    net.backward([0, 1])
    rng = np.random.default_rng(2)
    grads = {n: g.local.copy() for n, g in net.gradients().items()}
    # stage 1's objective reads stage 0's output as fixed data: its gradient does not
    # reach stage 0, so stage 0's gradient is that of its own objective alone
    for name, param in net.parameters().items():
        s = int(name[5])

        def own(s=s) -> float:
            return net.forward(x, [0, 1])[s].total

        assert check_gradient(own, param.local, grads[name], rng, samples=12, h=H) < 1e-6, name


def test_network_errors():
    with pytest.raises(ValueError, match="at least one stage"):
        Network((8, 8, 1), [], self_grid())
    with pytest.raises(ValueError, match="stage 1"):
        Network((8, 8, 1), [StageSpec(3, 2, 2, 3), StageSpec(5, 2, 2, 3)], self_grid())
    with pytest.raises(ValueError, match="stages to train"):
        network().forward(batch((12, 11, 2)), [2])
