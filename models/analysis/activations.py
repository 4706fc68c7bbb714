"""Neuron activations on a set of images, computed where the neurons live.

A layer's neurons are its output locations and maps, (rows, columns, maps), numbered
row-major (:func:`neuron_index`). Each rank computes the activations of the neurons its
block of the grid owns, on every image, and never sees the others': the result is a
(neurons on this rank, images) array and the global numbers of its rows. The baseline bank
of random linear filters (:func:`random_filter_activations`) is split over ranks the same
way, by filter.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from distarray import balanced_blocks
from distarray.backend import to_host

from ..network import Network

__all__ = ["layer_activations", "neuron_index", "neuron_position", "random_filter_activations", "FILTER_CHUNK"]

FILTER_CHUNK = 64  # random filters are drawn and applied in blocks aligned to multiples of this


def neuron_index(position: Sequence[int], shape: Sequence[int]) -> int:
    """The flat number of the neuron at (row, column, map) of a layer of ``shape``."""
    return int(np.ravel_multi_index(tuple(int(p) for p in position), tuple(shape)))


def neuron_position(index: int, shape: Sequence[int]) -> tuple[int, int, int]:
    """(row, column, map) of neuron number ``index`` of a layer of ``shape``."""
    return tuple(int(v) for v in np.unravel_index(int(index), tuple(shape)))  # type: ignore[return-value]


def _check_images(images: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != tuple(shape) or images.shape[0] < 1:
        raise ValueError(f"expected images (N >= 1, {', '.join(map(str, shape))}), got shape {images.shape}")
    return images


def layer_activations(network: Network, images: np.ndarray, stage: int, layer: str,
                      batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """This rank's neurons of ``layer`` of ``stage`` on every image.

    Parameters
    ----------
    network : Network
    images : (N, H, W, C) array
        Normalised as in training (:func:`models.data.normalise_images`); the same on every rank.
    stage, layer
        Which layer (see :meth:`Network.layer_names`).
    batch : int
        Images per forward pass.

    Returns
    -------
    acts : (n, N) float64
        The activations of the n neurons this rank owns.
    indices : (n,) int64
        Their global numbers (:func:`neuron_index`), ascending.

    Collective: call on every rank of the network's grid with the same images.
    """
    images = _check_images(images, network.input_shape)
    shape = network.layer_shape(stage, layer)
    blocks = []
    for lo in range(0, len(images), batch):
        chunk = np.moveaxis(images[lo:lo + batch], 0, -1)  # (H, W, C, b)
        y = network.forward_to(network.input_array(chunk), stage, layer)  # (oh, ow, M, b) distributed
        local = to_host(y.local)  # (hl, wl, M, b)
        blocks.append(local.reshape(-1, local.shape[3]).astype(np.float64))
    box = y.layout.box(network.grid.rank)
    rows, cols = np.arange(box.lo[0], box.hi[0]), np.arange(box.lo[1], box.hi[1])
    ii, jj, mm = np.meshgrid(rows, cols, np.arange(shape[2]), indexing="ij")  # (hl, wl, M) each
    indices = np.ravel_multi_index((ii.ravel(), jj.ravel(), mm.ravel()), shape).astype(np.int64)
    return np.concatenate(blocks, axis=1), indices


def random_filter_activations(images: np.ndarray, count: int, seed: int, rank: int,
                              size: int) -> tuple[np.ndarray, np.ndarray]:
    """Responses of this rank's share of a bank of ``count`` random linear filters.

    Filter i is a Gaussian image drawn from ``default_rng([seed, i])`` scaled to unit norm,
    so filter i is the same on any number of ranks; its response to an image is the dot
    product. Filters are drawn and applied in blocks of :data:`FILTER_CHUNK` aligned to
    global multiples of it, and ranks get whole blocks, so every response is computed by
    the same arithmetic on any number of ranks.

    Parameters
    ----------
    images : (N, H, W, C) array
        Normalised as in training.
    count : int
        Filters in the whole bank.
    seed : int
    rank, size : int
        This rank and the number of ranks sharing the bank.

    Returns
    -------
    acts : (n, N) float64
    indices : (n,) int64
        The filters' numbers.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected images (N, H, W, C), got shape {images.shape}")
    if count < 1 or not 0 <= rank < size:
        raise ValueError(f"expected count >= 1 and rank in range(size), got count {count}, rank {rank}, size {size}")
    flat = images.reshape(len(images), -1).astype(np.float64).T  # (D, N)
    chunks = -(-count // FILTER_CHUNK)
    shares = np.cumsum((0,) + balanced_blocks(chunks, size))
    first, last = shares[rank] * FILTER_CHUNK, min(count, shares[rank + 1] * FILTER_CHUNK)
    out = np.empty((max(0, last - first), flat.shape[1]))  # (n, N)
    for lo in range(first, last, FILTER_CHUNK):
        hi = min(last, lo + FILTER_CHUNK)
        bank = np.stack([np.random.default_rng([seed, i]).standard_normal(flat.shape[0]) for i in range(lo, hi)])
        bank /= np.linalg.norm(bank, axis=1, keepdims=True)  # (c, D) unit rows
        out[lo - first:hi - first] = bank @ flat  # (c, N)
    return out, np.arange(first, last, dtype=np.int64)
