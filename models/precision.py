"""16-bit storage for float32 arrays: bfloat16 (as the upper half of float32 bits, in a
uint16 container) or IEEE float16, with round-to-nearest-even or stochastic rounding.

The optimiser keeps its state (SGD's momentum, Adagrad's sum of squares) in one of these
formats to halve that memory (``train.state_dtype``). The arithmetic stays float32: each
chunk of an update is decoded into a float32 temporary, updated, and encoded back. NumPy has
no bfloat16 type, so bfloat16 is stored as uint16 bit patterns: decoding shifts them into
the upper half of a float32, and encoding rounds the lower half away. Everything here is
elementwise, ``xp``-generic (NumPy or CuPy) and independent of where an element lives, so
the stored bits are the same at any number of ranks.

Stochastic rounding needs random bits that do not depend on the rank layout. They come
from a hash of the element's float32 bits and a salt (the training step), so that an
element rounds the same way on 1 rank or 64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distarray.backend import get_array_module

__all__ = ["STORAGE", "ROUNDINGS", "storage_dtype", "decode", "encode", "bytes_per_element"]

STORAGE = ("float32", "bfloat16", "float16")
ROUNDINGS = ("nearest", "stochastic")

_CONTAINER = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(np.uint16), "float16": np.dtype(np.float16)}


def storage_dtype(name: str) -> np.dtype:
    """The NumPy dtype that holds values stored as ``name``."""
    if name not in _CONTAINER:
        raise ValueError(f"expected a storage format in {STORAGE}, got {name!r}")
    return _CONTAINER[name]


def bytes_per_element(name: str) -> int:
    """Bytes one stored value takes (what the planner counts)."""
    return storage_dtype(name).itemsize


def decode(stored: Any, name: str, out: Any) -> Any:
    """``out`` (float32, the shape of ``stored``) = the values ``stored`` holds."""
    xp = get_array_module(stored)
    if name == "bfloat16":
        bits = out.view(xp.uint32)
        bits[...] = stored
        bits <<= 16
    else:
        out[...] = stored
    return out


def _hash32(xp: Any, bits: Any, salt: int) -> Any:
    """A 32-bit mix of ``bits`` (uint32) and ``salt``: the "lowbias32" integer hash."""
    x = bits ^ xp.uint32((0x9E3779B9 * (salt + 1)) & 0xFFFFFFFF)
    x ^= x >> xp.uint32(16)
    x *= xp.uint32(0x7FEB352D)
    x ^= x >> xp.uint32(15)
    x *= xp.uint32(0x846CA68B)
    x ^= x >> xp.uint32(16)
    return x


def encode(values: Any, name: str, out: Any, rounding: str = "nearest", salt: int = 0) -> Any:
    """Store float32 ``values`` into ``out`` (of :func:`storage_dtype` ``name``).

    ``"nearest"`` rounds to the nearest representable value (ties to even). ``"stochastic"``
    (bfloat16 only) rounds up with probability equal to the dropped fraction, so that small
    increments survive on average where nearest rounding would drop them. ``values`` may be
    overwritten.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"expected a rounding in {ROUNDINGS}, got {rounding!r}")
    xp = get_array_module(values)
    if name != "bfloat16":
        if rounding == "stochastic":
            raise ValueError(f"expected rounding 'nearest' for {name} storage (stochastic is for bfloat16), "
                             f"got {rounding!r}")
        out[...] = values
        return out
    bits = values.view(xp.uint32)
    if rounding == "nearest":
        bits += xp.uint32(0x7FFF) + ((bits >> xp.uint32(16)) & xp.uint32(1))
    else:
        bits += _hash32(xp, bits, salt) & xp.uint32(0xFFFF)
    bits >>= xp.uint32(16)
    out[...] = bits
    return out
