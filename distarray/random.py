"""Counter-based random numbers: a value depends only on the seed and its global index.

Element ``i`` (row-major global linear index) of stream ``s`` gets the ``(2 i + s + 1)``-th
output of SplitMix64 seeded with a hash of ``seed``: the output is a hash of the counter,
so every rank computes its own block without communicating and the global array is the
same on 1 rank or 64, on NumPy or CuPy (uniform and normal use float64 arithmetic before
the final cast). SplitMix64 (Steele, Lea and Flood 2014) passes BigCrush.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Sequence

import numpy as np

from .box import Box

__all__ = ["random_block", "random_global"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 1 << 22  # elements per slab: bounds the uint64/float64 temporaries


def _mix(z: Any) -> Any:
    """SplitMix64's output function on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _key(seed: int) -> np.uint64:
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"expected a seed in [0, 2**64), got {seed}")
    with np.errstate(over="ignore"):
        return _mix(np.array([seed], dtype=np.uint64))[0]


def _indices(shape: Sequence[int], box: Box, xp: ModuleType) -> Any:
    """Row-major global linear indices of ``box`` in an array of ``shape``, as uint64."""
    index = xp.zeros((1,) * box.ndim, dtype=xp.uint64)
    stride = 1
    for k in range(box.ndim - 1, -1, -1):
        axis = xp.arange(box.lo[k], box.hi[k], dtype=xp.uint64) * np.uint64(stride)
        index = index + axis.reshape((-1,) + (1,) * (box.ndim - 1 - k))
        stride *= shape[k]
    return index  # (box shape)


def _unit(index: Any, key: np.uint64, stream: int) -> Any:
    """Uniform float64 in [0, 1) from 53 bits of the hash of (key, 2 * index + stream)."""
    counter = index * np.uint64(2) + np.uint64(stream + 1)
    bits = _mix(key + counter * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def _draw(index: Any, key: np.uint64, dist: str, a: float, b: float, xp: ModuleType) -> Any:
    if dist == "uniform":
        return a + (b - a) * _unit(index, key, 0)
    if dist == "normal":
        u1 = 1.0 - _unit(index, key, 0)  # (0, 1]
        u2 = _unit(index, key, 1)
        return a + b * xp.sqrt(-2.0 * xp.log(u1)) * xp.cos(2.0 * np.pi * u2)
    raise ValueError(f"expected dist 'uniform' or 'normal', got {dist!r}")


def random_block(
    shape: Sequence[int],
    box: Box,
    seed: int,
    dist: str = "uniform",
    a: float = 0.0,
    b: float = 1.0,
    dtype: "np.typing.DTypeLike" = np.float32,
    xp: ModuleType = np,
) -> Any:
    """The values of ``box`` in the global random array of ``shape`` (pure, no MPI).

    Parameters
    ----------
    shape : sequence of int
        Global shape (fixes the linear index of each element).
    box : Box
        Region to compute, inside the bounds.
    seed : int
        Seed in [0, 2**64).
    dist : {"uniform", "normal"}
        Uniform on [a, b) or normal with mean a and standard deviation b.
    dtype : dtype-like
        Result type (values are computed in float64, then cast).
    xp : module
        numpy or cupy.
    """
    key = _key(seed)
    out = xp.empty(box.shape, dtype=dtype)  # (box shape)
    rows = max(1, _CHUNK // max(1, box.size // max(1, box.shape[0]))) if box.ndim else 1
    with np.errstate(over="ignore"):
        if box.ndim == 0:
            return xp.asarray(_draw(xp.zeros((), xp.uint64), key, dist, a, b, xp), dtype=dtype)
        for start in range(box.lo[0], box.hi[0], rows):
            stop = min(start + rows, box.hi[0])
            slab = Box((start,) + box.lo[1:], (stop,) + box.hi[1:])
            values = _draw(_indices(shape, slab, xp), key, dist, a, b, xp)
            out[start - box.lo[0]:stop - box.lo[0]] = values.astype(dtype)
    return out


def random_global(
    shape: Sequence[int], seed: int, dist: str = "uniform", a: float = 0.0, b: float = 1.0,
    dtype: "np.typing.DTypeLike" = np.float32,
) -> np.ndarray:
    """The whole global random array as NumPy: the serial oracle for the distributed one."""
    shape = tuple(shape)
    return random_block(shape, Box((0,) * len(shape), shape), seed, dist, a, b, dtype, np)
