"""Constructors for DistArray: empty/zeros/full, from a global array, scatter, random.

All are collective: call on every rank of the grid with the same arguments (the layout is
compared across ranks, and a mismatch raises on every rank).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import backend
from . import comm as _comm
from .array import DistArray
from .grid import ProcessGrid
from .layout import Layout
from .random import random_block

__all__ = [
    "agreed_layout",
    "empty",
    "zeros",
    "full",
    "empty_like",
    "zeros_like",
    "from_global",
    "scatter",
    "uniform",
    "normal",
]

Split = Sequence[int | None] | None
Blocks = Sequence[Sequence[int] | None] | None


def agreed_layout(
    grid: ProcessGrid, shape: Sequence[int], split: Split = None, dtype: Any = np.float32,
    blocks: Blocks = None,
) -> Layout:
    """Collective: build a layout on ``grid`` and check every rank built the same one."""
    layout, error = None, None
    try:
        layout = Layout.create(shape, grid.dims, split, dtype, blocks)
    except (TypeError, ValueError) as exc:
        error = exc
    _comm.agree(grid.comm, error)
    _comm.same_everywhere(grid.comm, layout.describe(), "layouts")
    return layout


def empty(
    shape: Sequence[int], grid: ProcessGrid, split: Split = None, dtype: Any = np.float32,
    blocks: Blocks = None, backend_name: str = "numpy",
) -> DistArray:
    """Collective: an uninitialised distributed array.

    Parameters
    ----------
    shape : sequence of int
        Global shape.
    grid : ProcessGrid
        The ranks.
    split : sequence of (int or None), optional
        Grid dimension for each axis (default: the first axes over the grid dims in order).
    dtype : dtype-like
        Element type (default float32).
    blocks : sequence, optional
        Explicit block extents per axis (default balanced; uneven when sizes do not divide).
    backend_name : {"numpy", "cupy"}
        Where the local block lives.
    """
    layout = agreed_layout(grid, shape, split, dtype, blocks)
    xp = backend.namespace(backend_name)
    return DistArray(xp.empty(layout.local_shape(grid.rank), dtype=layout.dtype), layout, grid)


def zeros(shape: Sequence[int], grid: ProcessGrid, split: Split = None, dtype: Any = np.float32,
          blocks: Blocks = None, backend_name: str = "numpy") -> DistArray:
    """Collective: a distributed array of zeros (arguments as :func:`empty`)."""
    x = empty(shape, grid, split, dtype, blocks, backend_name)
    x.local[...] = 0
    return x


def full(shape: Sequence[int], grid: ProcessGrid, value: float, split: Split = None,
         dtype: Any = np.float32, blocks: Blocks = None, backend_name: str = "numpy") -> DistArray:
    """Collective: a distributed array filled with ``value`` (other arguments as :func:`empty`)."""
    x = empty(shape, grid, split, dtype, blocks, backend_name)
    x.local[...] = value
    return x


def empty_like(x: DistArray) -> DistArray:
    """An uninitialised array with ``x``'s layout, grid and backend (local; no communication)."""
    xp = backend.get_array_module(x.local)
    return DistArray(xp.empty_like(x.local), x.layout, x.grid)


def zeros_like(x: DistArray) -> DistArray:
    """Zeros with ``x``'s layout, grid and backend (local; no communication)."""
    xp = backend.get_array_module(x.local)
    return DistArray(xp.zeros_like(x.local), x.layout, x.grid)


def from_global(array: Any, grid: ProcessGrid, split: Split = None, blocks: Blocks = None,
                backend_name: str | None = None) -> DistArray:
    """Collective: every rank holds the same global ``array`` and keeps a copy of its block.

    The backend defaults to the array's own.
    """
    given = type(array).__name__
    _comm.agree(grid.comm, None if hasattr(array, "shape") and hasattr(array, "dtype")
                else TypeError(f"from_global expected an array, got {given}"))
    layout = agreed_layout(grid, array.shape, split, array.dtype, blocks)
    name = backend_name or backend.backend_name(array)
    xp = backend.namespace(name)
    part = array[layout.box(grid.rank).slices()]
    source = backend.to_host(part) if name == "numpy" else part
    local = xp.array(source, order="C", copy=True)  # never a view of the caller's array
    return DistArray(local, layout, grid)


def scatter(array: Any, grid: ProcessGrid, root: int = 0, split: Split = None,
            blocks: Blocks = None, backend_name: str = "numpy") -> DistArray:
    """Collective: only ``root`` holds the global ``array`` (others pass None); every rank
    receives its block. Moves each block once, straight from ``root`` to its owner."""
    if not 0 <= root < grid.size:
        raise ValueError(f"expected root in range({grid.size}), got {root}")
    meta = None
    if grid.rank == root:
        meta = ((tuple(array.shape), np.dtype(array.dtype).str) if hasattr(array, "shape")
                else f"expected an array on root {root}, got {type(array).__name__}")
    meta = _comm.allgather(grid.comm, meta)[root]
    if isinstance(meta, str):
        raise TypeError(meta)
    shape, dtype = meta
    target = agreed_layout(grid, shape, split, dtype, blocks)
    # a layout in which root owns everything and every other rank an empty block
    coords = target.coords(root)
    on_root = [None if s is None else tuple(shape[k] if c == coords[s] else 0
                                            for c in range(grid.dims[s]))
               for k, s in enumerate(target.split)]
    source_layout = Layout.create(shape, grid.dims, target.split, dtype, on_root)
    xp = backend.namespace(backend_name)
    if grid.rank == root:
        local = xp.ascontiguousarray(xp.asarray(array))
    else:
        local = xp.empty(source_layout.local_shape(grid.rank), dtype=dtype)
    return DistArray(local, source_layout, grid).redistribute(target)


def _random(dist: str, shape: Sequence[int], grid: ProcessGrid, seed: int, a: float, b: float,
            split: Split, dtype: Any, blocks: Blocks, backend_name: str) -> DistArray:
    layout = agreed_layout(grid, shape, split, dtype, blocks)
    xp = backend.namespace(backend_name)
    local = random_block(layout.shape, layout.box(grid.rank), seed, dist, a, b, layout.dtype, xp)
    return DistArray(local, layout, grid)


def uniform(shape: Sequence[int], grid: ProcessGrid, seed: int, low: float = 0.0, high: float = 1.0,
            split: Split = None, dtype: Any = np.float32, blocks: Blocks = None,
            backend_name: str = "numpy") -> DistArray:
    """Collective: uniform values on [low, high) that depend only on ``seed`` and the global
    index, so the global array is the same on any number of ranks and any layout."""
    return _random("uniform", shape, grid, seed, low, high, split, dtype, blocks, backend_name)


def normal(shape: Sequence[int], grid: ProcessGrid, seed: int, mean: float = 0.0, std: float = 1.0,
           split: Split = None, dtype: Any = np.float32, blocks: Blocks = None,
           backend_name: str = "numpy") -> DistArray:
    """Collective: normal values (Box-Muller) that depend only on ``seed`` and the global
    index; the same global array on any number of ranks."""
    return _random("normal", shape, grid, seed, mean, std, split, dtype, blocks, backend_name)
