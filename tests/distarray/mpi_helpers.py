"""Shared pieces of the MPI tests: grids and layouts for any size, random boxes, NumPy oracles.

The oracles here are independent of distarray's layout arithmetic: block boundaries come
from ``np.array_split`` (larger blocks first) and grid coordinates from ``np.unravel_index``
(row-major), as the design fixes them.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pytest

import distarray as da
from distarray import comm as _comm

SEED = 20130616  # Coates et al., ICML 2013


def world():
    """COMM_WORLD."""
    return _comm.world()


def rank() -> int:
    return world().Get_rank()


def size() -> int:
    return world().Get_size()


# -- grids and layouts ------------------------------------------------------------------
def grid_shapes(n: int, ndim: int) -> list[tuple[int, ...]]:
    """Every ordered ``ndim``-tuple of positive ints whose product is ``n``."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return [c for c in itertools.product(divisors, repeat=ndim) if math.prod(c) == n]


_GRIDS: dict[tuple[int, ...], da.ProcessGrid] = {}


def grid(dims: Sequence[int]) -> da.ProcessGrid:
    """Collective (first time per dims): a ProcessGrid over COMM_WORLD, cached by dims.

    Every rank runs the same tests in the same order, so the cache fills in the same order.
    """
    dims = tuple(dims)
    if dims not in _GRIDS:
        _GRIDS[dims] = da.ProcessGrid(dims)
    return _GRIDS[dims]


def layouts(n: int, ndim: int, max_grid_ndim: int = 3) -> list[tuple[tuple[int, ...], tuple]]:
    """Every (grid dims, split) for ``n`` ranks and an ``ndim``-D array: each grid of up to
    ``max_grid_ndim`` dims, each way of sending its dims to distinct array axes (grid dims of
    size 1 may split nothing). Deterministic order, the same on every rank."""
    found = []
    for gnd in range(1, max_grid_ndim + 1):
        for dims in grid_shapes(n, gnd):
            choices = [range(-1, ndim) if d == 1 else range(ndim) for d in dims]  # -1: none
            for axes in itertools.product(*choices):
                used = [a for a in axes if a >= 0]
                if len(set(used)) != len(used):
                    continue
                split = [None] * ndim
                for d, axis in enumerate(axes):
                    if axis >= 0:
                        split[axis] = d
                found.append((dims, tuple(split)))
    return found


def some_layouts(n: int, ndim: int, count: int, seed: int = 0) -> list:
    """``count`` layouts from :func:`layouts` (all when fewer), the same on every rank, drawn
    by ``seed`` in turn from those that split 1, 2, ... axes for real (over grid dims > 1)."""
    every = layouts(n, ndim)
    if len(every) <= count:
        return every
    rng = np.random.default_rng([SEED, seed])
    groups: dict[int, list] = {}
    for dims, split in every:
        groups.setdefault(sum(d > 1 for d in dims), []).append((dims, split))
    queues = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(groups.items())]
    picked = []
    while len(picked) < count:
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def random_blocks(rng: np.random.Generator, extent: int, parts: int) -> tuple[int, ...]:
    """Random non-negative block extents summing to ``extent`` (zero-extent blocks allowed)."""
    cuts = np.sort(rng.integers(0, extent + 1, size=parts - 1))
    return tuple(int(b) for b in np.diff(np.concatenate([[0], cuts, [extent]])))


def explicit_blocks(rng: np.random.Generator, shape, dims, split) -> list:
    """Random explicit blocks for every split axis of a layout (None for the others)."""
    return [None if s is None else random_blocks(rng, shape[k], dims[s]) for k, s in enumerate(split)]


# -- the oracle: who owns what, computed without distarray -------------------------------
def block_bounds(extent: int, parts: int, blocks=None) -> list[tuple[int, int]]:
    """(start, stop) of each block along one axis: balanced like np.array_split, or explicit."""
    if blocks is None:
        pieces = np.array_split(np.arange(extent), parts)
        sizes = [len(p) for p in pieces]
    else:
        sizes = list(blocks)
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(offs[i]), int(offs[i + 1])) for i in range(parts)]


def owned_box(shape, dims, split, r: int, blocks=None) -> da.Box:
    """The box rank ``r`` owns (row-major grid coordinates)."""
    coords = np.unravel_index(r, dims)
    lo, hi = [], []
    for k, s in enumerate(split):
        if s is None:
            lo.append(0), hi.append(shape[k])
            continue
        b = None if blocks is None else blocks[k]
        start, stop = block_bounds(shape[k], dims[s], b)[int(coords[s])]
        lo.append(start), hi.append(stop)
    return da.Box(tuple(lo), tuple(hi))


def padded_fetch(g: np.ndarray, lo, hi) -> np.ndarray:
    """Oracle fetch: ``g[lo:hi]`` per axis, zeros where the box leaves the bounds."""
    pad = max(0, *(-a for a in lo), *(b - n for b, n in zip(hi, g.shape)))
    padded = np.pad(g, pad)
    return padded[tuple(slice(a + pad, b + pad) for a, b in zip(lo, hi))].copy()


def padded_add(g: np.ndarray, lo, hi, values: np.ndarray) -> None:
    """Oracle accumulate into ``g`` in place: add ``values`` over the box, drop what leaves it."""
    pad = max(0, *(-a for a in lo), *(b - n for b, n in zip(hi, g.shape)))
    padded = np.pad(g, pad)
    padded[tuple(slice(a + pad, b + pad) for a, b in zip(lo, hi))] += values
    g[...] = padded[tuple(slice(pad, pad + n) for n in g.shape)]


# -- data and boxes -----------------------------------------------------------------------
DTYPES = (np.float64, np.float32, np.int32)


def global_array(shape, dtype, seed: int) -> np.ndarray:
    """A random global array, identical on every rank."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def rank_rng(seed: int, r: int) -> np.random.Generator:
    """An rng different on every rank (any rank can replay another's)."""
    return np.random.default_rng([seed, r])


BOX_KINDS = ("random", "inside", "span", "partly_outside", "outside", "empty")


def random_box(rng: np.random.Generator, shape, kind: str) -> tuple[tuple, tuple]:
    """A random (lo, hi) of the given kind for an array of ``shape``."""
    lo, hi = [], []
    for n in shape:
        if kind == "inside":
            a = int(rng.integers(0, n + 1))
            b = int(rng.integers(a, n + 1))
        elif kind == "span":  # whole axis and a little more: every owner along it
            a = int(rng.integers(-2, 1))
            b = int(rng.integers(n, n + 3))
        elif kind == "partly_outside":
            a = int(rng.integers(-3, 0))
            b = int(rng.integers(max(a + 1, 1), n + 4))
        else:
            a = int(rng.integers(-3, n + 1))
            b = int(rng.integers(a, n + 4))
        lo.append(a), hi.append(b)
    if kind == "outside":  # one axis entirely off the array
        k = int(rng.integers(len(shape)))
        if rng.integers(2):
            lo[k] = int(rng.integers(shape[k], shape[k] + 3))
        else:
            lo[k] = int(rng.integers(-6, -2))
        hi[k] = lo[k] + int(rng.integers(1, 3))
    if kind == "empty":
        k = int(rng.integers(len(shape)))
        hi[k] = lo[k]
    return tuple(lo), tuple(hi)


def as_form(rng: np.random.Generator, lo, hi):
    """The same box as a Box, a list of (start, stop) pairs or a tuple of slices."""
    form = int(rng.integers(3))
    if form == 0:
        return da.Box(tuple(lo), tuple(hi))
    if form == 1:
        return [(a, b) for a, b in zip(lo, hi)]
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def same_everywhere(value) -> bool:
    """Collective: True when every rank holds an equal ``value`` (compared with ==)."""
    seen = world().allgather(value)
    return all(v == seen[0] for v in seen)


def all_alive() -> None:
    """Collective: every rank reaches this point (proves nobody is stuck elsewhere)."""
    assert world().allgather(rank()) == list(range(size()))
