"""Neuron activations, the input gradient through the whole network and the optimal
stimulus, on a tiny float64 network (serial)."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import comm
from models.analysis.activations import (layer_activations, neuron_index, neuron_position, random_filter_activations)
from models.config import StageSpec
from models.network import Network
from models.analysis.stimulus import neuron_values_and_gradient, optimal_stimulus

SHAPE = (14, 13, 2)
LAYERS = [(0, "filter"), (0, "pool"), (0, "norm"), (1, "filter"), (1, "pool")]


@pytest.fixture(scope="module")
def net():
    grid = da.ProcessGrid((1, 1), comm=comm.self_comm())
    return Network(SHAPE, [StageSpec(4, 3, 2, 3, eps=1e-3), StageSpec(3, 2, 2, 0, eps=1e-3)], grid, seed=3,
                   dtype=np.float64)


def images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE))  # (N, H, W, C)


def test_neuron_numbers_round_trip():
    shape = (5, 4, 3)
    assert [neuron_position(neuron_index(p, shape), shape) for p in [(0, 0, 0), (4, 3, 2), (2, 1, 0)]] == \
        [(0, 0, 0), (4, 3, 2), (2, 1, 0)]
    assert neuron_index((1, 0, 0), shape) == 12


@pytest.mark.parametrize("stage,layer", LAYERS)
def test_layer_activations_are_the_layer_outputs(net, stage, layer):
    x = images(7)
    acts, indices = layer_activations(net, x, stage, layer, batch=3)  # three batches, the last short
    y = net.forward_to(net.input_array(np.moveaxis(x, 0, -1)), stage, layer).local  # (oh, ow, M, N)
    assert y.shape[:3] == net.layer_shape(stage, layer)
    np.testing.assert_allclose(acts, y.reshape(-1, 7), rtol=1e-12, atol=1e-13)  # GEMM rounding: batch size
    np.testing.assert_array_equal(layer_activations(net, x, stage, layer, batch=7)[0], y.reshape(-1, 7))
    np.testing.assert_array_equal(indices, np.arange(y[..., 0].size))


def test_layer_names_and_errors(net):
    assert net.layer_names(0) == ("filter", "pool", "norm") and net.layer_names(1) == ("filter", "pool")
    with pytest.raises(ValueError, match=r"layer of stage 1 in \('filter', 'pool'\), got 'norm'"):
        net.layer_shape(1, "norm")
    with pytest.raises(ValueError, match=r"stage in range\(2\), got 2"):
        net.layer_names(2)
    with pytest.raises(ValueError, match="expected images"):
        layer_activations(net, images(2)[..., :1], 0, "pool")


@pytest.mark.parametrize("stage,layer", LAYERS)
def test_gradient_matches_finite_differences(net, stage, layer):
    count = int(np.prod(net.layer_shape(stage, layer)))
    neurons = [0, count // 2, count - 1]
    x = np.moveaxis(images(3, seed=1), 0, -1)  # (H, W, C, 3)
    values, grad = neuron_values_and_gradient(net, x, neurons, stage, layer)
    acts, _ = layer_activations(net, np.moveaxis(x, -1, 0), stage, layer)
    np.testing.assert_array_equal(values, [acts[j, b] for b, j in enumerate(neurons)])
    rng = np.random.default_rng(2)
    h = 1e-6
    for _ in range(8):
        at = tuple(int(rng.integers(n)) for n in x.shape)
        up, down = x.copy(), x.copy()
        up[at] += h
        down[at] -= h
        fd = (neuron_values_and_gradient(net, up, neurons, stage, layer)[0][at[3]]
              - neuron_values_and_gradient(net, down, neurons, stage, layer)[0][at[3]]) / (2 * h)
        assert abs(fd - grad[at]) <= 1e-6 * max(1.0, abs(fd)), (at, fd, grad[at])
    # a column's gradient belongs to its own neuron only
    single, g1 = neuron_values_and_gradient(net, x[..., 1:2], neurons[1:2], stage, layer)
    np.testing.assert_allclose(g1[..., 0], grad[..., 1], rtol=1e-12, atol=1e-15)


def test_gradient_leaves_weight_gradients_alone(net):
    before = {n: g.local.copy() for n, g in net.gradients().items()}
    neuron_values_and_gradient(net, np.moveaxis(images(1), 0, -1), [0], 1, "pool")
    for n, g in net.gradients().items():
        np.testing.assert_array_equal(g.local, before[n])


def test_stimulus_of_a_linear_neuron_is_its_filter(net):
    """For a filtering neuron y = w . patch the optimum over ||x|| = 1 is w / ||w||, value ||w||."""
    neurons = [0, 40]
    result = optimal_stimulus(net, neurons, 0, "filter", steps=150)
    filters = net.stages[0].encoder.filters()  # (oh, ow, M, k, k, C)
    for b, j in enumerate(neurons):
        i, jj, m = neuron_position(j, net.layer_shape(0, "filter"))
        w = filters[i, jj, m]  # (k, k, C)
        assert abs(result.values[b] - np.linalg.norm(w)) < 1e-3 * np.linalg.norm(w)
        patch = result.images[i:i + 4, jj:jj + 4, :, b]
        np.testing.assert_allclose(patch, w / np.linalg.norm(w), atol=0.02)


@pytest.mark.parametrize("stage,layer", [(0, "norm"), (1, "pool")])
def test_stimulus_has_unit_norm_and_beats_the_top_natural_image(net, stage, layer):
    pool = images(60, seed=4)  # stand-in natural images (normalised Gaussian noise)
    acts, _ = layer_activations(net, pool, stage, layer)
    count = acts.shape[0]
    neurons = [count // 3, count - 2]
    result = optimal_stimulus(net, neurons, stage, layer, steps=100, seed=5)
    np.testing.assert_allclose(np.sqrt((result.images**2).sum(axis=(0, 1, 2))), 1.0, rtol=1e-12)
    tops = np.moveaxis(pool[acts[neurons].argmax(axis=1)], 0, -1)  # (H, W, C, 2)
    tops = tops / np.sqrt((tops**2).sum(axis=(0, 1, 2)))
    natural, _ = neuron_values_and_gradient(net, tops, neurons, stage, layer)
    assert (result.values > natural).all(), (result.values, natural)
    assert result.history.shape == (101, 2)
    np.testing.assert_array_equal(result.values, result.history.max(axis=0))
    again, _ = neuron_values_and_gradient(net, result.images, neurons, stage, layer)
    np.testing.assert_allclose(again, result.values, rtol=1e-12)


def test_stimulus_bad_arguments(net):
    with pytest.raises(ValueError, match="at least one neuron"):
        optimal_stimulus(net, [], 0, "pool")
    with pytest.raises(ValueError, match=r"neuron numbers in range\(40\) for stage 1 pool \(5, 4, 2\), got \[40\]"):
        optimal_stimulus(net, [0, 40], 1, "pool")
    with pytest.raises(ValueError, match="start of shape"):
        optimal_stimulus(net, [0], 0, "pool", start=np.ones((3, 3, 2, 1)))


def test_random_filters_are_unit_norm_and_the_same_split_over_ranks():
    d = 2 * 3 * 2
    basis = np.eye(d).reshape(d, 2, 3, 2)  # image d is the d-th unit vector: responses are the filters
    whole, idx = random_filter_activations(basis, 150, seed=7, rank=0, size=1)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(idx, np.arange(150))
    x = images(5)
    ref, _ = random_filter_activations(x, 150, seed=7, rank=0, size=1)
    for size in (2, 3, 4):
        parts = [random_filter_activations(x, 150, seed=7, rank=r, size=size) for r in range(size)]
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), np.arange(150))
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), ref)
