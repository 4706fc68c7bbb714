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
_CHUNK = 1 << 22  # elements per slab: bounds the index array (and a GPU pass)
_PASS = 1 << 15  # elements per CPU pass: its scratch stays in the L2 cache
_DISTS = ("uniform", "normal")


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


def _unit(index: Any, key: np.uint64, stream: int, z: Any, tmp: Any, out: Any, xp: ModuleType) -> Any:
    """Uniform float64 in [0, 1) from 53 bits of the hash of (key, 2 * index + stream), into
    ``out``; ``z`` and ``tmp`` are uint64 scratch of the same size (everything in place: the
    arithmetic, and so the values, are those of the formula in the module docstring)."""
    xp.multiply(index, np.uint64(2), out=z)
    z += np.uint64(stream + 1)
    z *= _GOLDEN
    z += key
    for shift, factor in ((30, _M1), (27, _M2), (31, None)):  # SplitMix64's output function
        xp.right_shift(z, np.uint64(shift), out=tmp)
        z ^= tmp
        if factor is not None:
            z *= factor
    z >>= np.uint64(11)
    out[...] = z  # exact: 53 bits
    out *= 1.0 / 2**53
    return out


def _draw(index: Any, key: np.uint64, dist: str, a: float, b: float, scratch: list, xp: ModuleType) -> Any:
    """The float64 values at the flat uint64 ``index`` (a view of ``scratch[2]``; ``scratch``
    holds two uint64 and two float64 arrays at least as long)."""
    z, tmp, u, v = (buf[:index.size] for buf in scratch)
    if dist == "uniform":
        _unit(index, key, 0, z, tmp, u, xp)
        u *= b - a
        u += a
        return u
    _unit(index, key, 0, z, tmp, u, xp)  # Box-Muller: a + b sqrt(-2 log(1 - u1)) cos(2 pi u2)
    xp.subtract(1.0, u, out=u)  # (0, 1]
    xp.log(u, out=u)
    u *= -2.0
    xp.sqrt(u, out=u)
    u *= b
    _unit(index, key, 1, z, tmp, v, xp)
    v *= 2.0 * np.pi
    xp.cos(v, out=v)
    u *= v
    u += a
    return u


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
    if dist not in _DISTS:
        raise ValueError(f"expected dist 'uniform' or 'normal', got {dist!r}")
    key = _key(seed)
    out = xp.empty(box.shape, dtype=dtype)  # (box shape)
    if box.size == 0:
        return out
    flat = out.reshape(-1)
    per_row = box.size // box.shape[0] if box.ndim else 1
    rows = max(1, _CHUNK // per_row)  # rows per slab: bounds the slab's index array
    step = min(_PASS if xp is np else _CHUNK, box.size)  # elements per pass
    scratch = [xp.empty(step, xp.uint64), xp.empty(step, xp.uint64), xp.empty(step, xp.float64),
               xp.empty(step, xp.float64)]
    slabs = [(0, box)] if box.ndim == 0 else [
        (start - box.lo[0], Box((start,) + box.lo[1:], (min(start + rows, box.hi[0]),) + box.hi[1:]))
        for start in range(box.lo[0], box.hi[0], rows)]
    with np.errstate(over="ignore"):
        for first, slab in slabs:
            index = _indices(shape, slab, xp).reshape(-1)  # (slab size,) uint64
            dest = flat[first * per_row:first * per_row + index.size]
            for j in range(0, index.size, step):
                dest[j:j + step] = _draw(index[j:j + step], key, dist, a, b, scratch, xp)  # cast to dtype
    return out


def random_global(
    shape: Sequence[int], seed: int, dist: str = "uniform", a: float = 0.0, b: float = 1.0,
    dtype: "np.typing.DTypeLike" = np.float32,
) -> np.ndarray:
    """The whole global random array as NumPy: the serial oracle for the distributed one."""
    shape = tuple(shape)
    return random_block(shape, Box((0,) * len(shape), shape), seed, dist, a, b, dtype, np)
