"""The optimal stimulus of a neuron: the input of a fixed norm that drives it hardest.

    maximise  f(x) = y_j(x)   subject to  ||x||_2 = r

by projected gradient ascent (Le et al., ICML 2012, section 4.3 and figure 3): step along the
gradient, normalised so the step is an angle whatever the gradient's scale, then project back
onto the sphere. The gradient comes from back-propagating a one-hot seed at the neuron down
through every layer of the distributed network (:meth:`Network.backward_from`). Several
neurons are optimised at once, one per batch column: columns never interact.

The iterate is kept whole on every rank (it is one small image per neuron): each step
all-gathers the input gradient, so every rank makes the same update and the result does
not depend on the number of ranks beyond the rounding of the exchanges' sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

import distarray as da
from distarray import comm
from distarray.backend import to_host

from .activations import neuron_position
from ..network import Network

__all__ = ["Stimulus", "neuron_values_and_gradient", "optimal_stimulus"]


def neuron_values_and_gradient(network: Network, x: np.ndarray, neurons: Sequence[int], stage: int,
                               layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Neuron ``neurons[b]``'s activation on image ``x[..., b]`` and its gradient.

    Parameters
    ----------
    x : (H, W, C, K) array
        One input per neuron, the same on every rank.
    neurons : K global neuron numbers (see :func:`models.analysis.activations.neuron_index`)

    Returns
    -------
    values : (K,) float64
    gradient : (H, W, C, K) float64, the whole array on every rank

    Collective: call on every rank of the network's grid.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[3] != len(neurons):
        raise ValueError(f"expected inputs (H, W, C, {len(neurons)}): one per neuron, got shape {x.shape}")
    shape = network.layer_shape(stage, layer)
    bad = [n for n in neurons if not 0 <= int(n) < int(np.prod(shape))]
    if bad:
        raise ValueError(f"expected neuron numbers in range({int(np.prod(shape))}) for stage {stage} {layer} "
                         f"{shape}, got {bad}")
    y = network.forward_to(network.input_array(x), stage, layer)  # (oh, ow, M, K) distributed
    seed = da.zeros_like(y)  # d(sum_b y[j_b, b]) / dy: one-hot per column
    box = y.layout.box(network.grid.rank)
    owned = np.zeros(len(neurons))  # (K,) this rank's neurons' values, zero elsewhere
    for b, index in enumerate(neurons):
        i, j, m = neuron_position(index, shape)
        if box.lo[0] <= i < box.hi[0] and box.lo[1] <= j < box.hi[1]:
            at = (i - box.lo[0], j - box.lo[1], m, b)
            seed.local[at] = 1.0
            owned[b] = float(to_host(y.local[at]))
    values = np.array(comm.exact_sums(network.grid.comm, owned.tolist()))  # one owner per neuron
    grad = network.backward_from(seed, stage, layer).allgather()  # (H, W, C, K) everywhere
    return values, to_host(grad).astype(np.float64)


@dataclass(frozen=True)
class Stimulus:
    """The result of :func:`optimal_stimulus`.

    Attributes
    ----------
    images : (H, W, C, K) float64
        The best input found for each neuron, of norm ``radius``.
    values : (K,) float64
        Each neuron's activation on its image.
    history : (steps + 1, K) float64
        Activations of the iterates, the start first.
    """

    images: np.ndarray
    values: np.ndarray
    history: np.ndarray


def _project(x: np.ndarray, radius: float) -> np.ndarray:
    norms = np.sqrt((x * x).sum(axis=(0, 1, 2), keepdims=True))  # (1, 1, 1, K)
    return x * (radius / np.maximum(norms, 1e-300))


def optimal_stimulus(network: Network, neurons: Sequence[int], stage: int, layer: str, steps: int = 200,
                     step_size: float = 0.2, radius: float = 1.0, seed: int = 0,
                     start: np.ndarray | None = None) -> Stimulus:
    """Maximise each neuron's activation over inputs of norm ``radius`` by projected
    gradient ascent.

    Parameters
    ----------
    network : Network
    neurons : sequence of int
        Global neuron numbers of ``layer`` of ``stage``; optimised together, one per column.
    steps : int
        Ascent steps.
    step_size : float
        The first step's angle (radians, roughly); it decays linearly to a tenth of that.
    radius : float
        The norm of every input.
    seed : int
        The start is Gaussian noise from ``seed`` (the same on every rank), projected.
    start : (H, W, C, K) array, optional
        Start here instead (projected).

    Returns
    -------
    Stimulus
        The best iterate per neuron (ascent is not monotone with a fixed schedule).

    Collective: call on every rank of the network's grid with the same arguments.
    """
    if steps < 0 or not step_size > 0 or not radius > 0 or not neurons:
        raise ValueError(f"expected steps >= 0, step_size > 0, radius > 0 and at least one neuron, got steps "
                         f"{steps}, step_size {step_size}, radius {radius}, {len(neurons)} neurons")
    shape = network.input_shape + (len(neurons),)
    x = np.random.default_rng(seed).standard_normal(shape) if start is None else np.array(start, np.float64)
    if x.shape != shape:
        raise ValueError(f"expected a start of shape {shape}, got {x.shape}")
    x = _project(x, radius)  # (H, W, C, K)
    best, best_values, history = x.copy(), np.full(len(neurons), -np.inf), []
    for t in range(steps + 1):
        values, grad = neuron_values_and_gradient(network, x, neurons, stage, layer)
        history.append(values)
        better = values > best_values
        best[..., better], best_values[better] = x[..., better], values[better]
        if t == steps:
            break
        # the gradient's part along the sphere, normalised: each step turns x by about `angle`
        radial = (grad * x).sum(axis=(0, 1, 2), keepdims=True) / radius**2  # (1, 1, 1, K)
        tangent = grad - radial * x  # (H, W, C, K)
        size = np.sqrt((tangent * tangent).sum(axis=(0, 1, 2), keepdims=True))  # (1, 1, 1, K)
        angle = step_size * (1.0 - 0.9 * t / max(1, steps))
        x = _project(x + angle * radius * tangent / np.maximum(size, 1e-300), radius)
    return Stimulus(best, best_values, np.array(history))
