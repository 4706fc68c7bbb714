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


def stage(bias=False, lam=0.1, dtype=np.float64, shape=(9, 8, 2), maps=3, k=4, pool=2, stride=1, tied=False,
          norm="none"):
    return SparseAutoencoder(shape, maps, k, pool, self_grid(), lam=lam, eps=1e-3, stride=stride, seed=5,
                             bias=bias, tied=tied, norm=norm, dtype=dtype)


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


@pytest.mark.parametrize("stride,bias", [(1, False), (2, True)])
def test_tied_weights_objective_and_gradients(stride, bias):
    """Tied: one weight array serves as W1 and W2^T; the objective is the untied one with
    W2 = W1, and dJ/dW (the encoder's part plus the decoder's) matches finite differences."""
    ae = stage(tied=True, stride=stride, bias=bias)
    assert set(ae.parameters()) == {"encoder.weight"} | ({"encoder.bias"} if bias else set())
    assert ae.decoder.weight is ae.encoder.weight
    x = batch(ae.in_shape)
    xg = x.local.copy()
    losses, _ = ae.forward(x)
    w = ae.encoder.weight.local
    z = lc_reference(xg, w, None if not bias else ae.encoder.bias.local, 4, stride, 0)
    xhat = lc_transpose_reference(z, w, xg.shape[:2], 4, stride, 0)
    assert losses.reconstruction == pytest.approx(np.sum((xhat - xg) ** 2) / 3, rel=1e-12)

    def loss() -> float:
        return ae.forward(x)[0].total

    loss()
    ae.backward()
    first = {name: g.local.copy() for name, g in ae.gradients().items()}
    loss()
    ae.backward()  # a second backward overwrites (the decoder's part), then adds (the encoder's)
    assert all(np.array_equal(ae.gradients()[name].local, g) for name, g in first.items())
    rng = np.random.default_rng(2)
    for name, param in ae.parameters().items():
        assert check_gradient(loss, param.local, first[name], rng, h=H) < 1e-6, name


def test_tied_gradient_is_the_sum_of_the_untied_parts():
    untied, tied = stage(), stage(tied=True)
    untied.decoder.weight.local[...] = untied.encoder.weight.local  # the same network, untied
    x = batch(untied.in_shape)
    untied.forward(x)
    untied.backward()
    tied.forward(x)
    tied.backward()
    total = untied.encoder.grad_weight.local + untied.decoder.grad_weight.local
    assert np.allclose(tied.gradients()["encoder.weight"].local, total, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm,tied", [("encoder", False), ("decoder", False), ("both", False), ("encoder", True)])
def test_unit_norm_projection(norm, tied):
    ae = stage(norm=norm, tied=tied)
    chosen = {"encoder": [ae.encoder], "decoder": [ae.decoder], "both": [ae.encoder, ae.decoder]}[norm]
    others = [layer for layer in (ae.encoder, ae.decoder) if layer not in chosen and not tied]
    for layer in chosen:  # projected at construction
        assert np.allclose(np.linalg.norm(layer.weight.local, axis=3), 1.0, atol=1e-12)
    for layer in others:
        assert not np.allclose(np.linalg.norm(layer.weight.local, axis=3), 1.0)
    for layer in (ae.encoder, ae.decoder):
        layer.weight.local *= 3.0
    ae.project()
    for layer in chosen:
        assert np.allclose(np.linalg.norm(layer.weight.local, axis=3), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="norm one of"):
        stage(norm="rows")


def test_projection_keeps_a_zero_filter_zero():
    ae = stage(norm="encoder")
    ae.encoder.weight.local[0, 0, 0] = 0.0
    ae.project()
    assert not ae.encoder.weight.local[0, 0, 0].any()
    assert np.isfinite(ae.encoder.weight.local).all()


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
