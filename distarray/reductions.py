"""Collective reductions whose result does not depend on the number of ranks.

Each rank reduces its block (floats in float64), the partial results are allgathered, and
every rank combines them in rank order with an exactly rounded sum (``math.fsum``), so all
ranks return the same Python number. Splitting the array differently changes only the
float64 partial sums, i.e. the result moves by float64 rounding at most (max and min are
exact).
"""

from __future__ import annotations

import builtins
import math
from typing import TYPE_CHECKING

import numpy as np

from . import backend
from . import comm as _comm

if TYPE_CHECKING:  # pragma: no cover
    from .array import DistArray

__all__ = ["sum", "max", "min", "norm", "dot", "local_squares"]


def _accumulator(dtype: np.dtype) -> type:
    if np.issubdtype(dtype, np.floating):
        return np.float64
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        return np.int64
    raise TypeError(f"expected a real floating or integer array, got dtype {dtype}")


def _combine(x: "DistArray", partial: float | int) -> float | int:
    if isinstance(partial, float):
        return _comm.exact_sums(x.grid.comm, [partial])[0]
    return builtins.sum(_comm.allgather(x.grid.comm, partial))


def sum(x: "DistArray") -> float | int:
    """Collective: the sum of all elements (float64 accumulation for floats)."""
    acc = _accumulator(x.dtype)
    xp = backend.get_array_module(x.local)
    partial = xp.sum(x.local, dtype=acc).item()
    return _combine(x, float(partial) if acc is np.float64 else int(partial))


def _extreme(x: "DistArray", pick: str) -> float | int:
    _accumulator(x.dtype)
    xp = backend.get_array_module(x.local)
    partial = None if x.local.size == 0 else getattr(xp, pick)(x.local).item()
    parts = [p for p in _comm.allgather(x.grid.comm, partial) if p is not None]
    if not parts:
        raise ValueError(f"{pick} of an empty array (shape {x.shape})")
    return getattr(builtins, pick)(parts)


def max(x: "DistArray") -> float | int:
    """Collective: the largest element (exact)."""
    return _extreme(x, "max")


def min(x: "DistArray") -> float | int:
    """Collective: the smallest element (exact)."""
    return _extreme(x, "min")


SQUARES_CHUNK = 1 << 22  # elements widened to float64 at a time by local_squares


def local_squares(x: "DistArray") -> float:
    """This rank's sum of the squares of its block, in float64 (local: no messages). Sum the
    ranks' values with :func:`distarray.comm.exact_sums` to combine several arrays' in one message."""
    _accumulator(x.dtype)
    xp = backend.get_array_module(x.local)
    flat = x.local.reshape(-1)  # (n,)
    if flat.dtype == xp.float64 or flat.size <= SQUARES_CHUNK:
        wide = flat.astype(xp.float64, copy=False)
        return float(xp.dot(wide, wide).item())
    total = 0.0  # float32 blocks in float64 chunks: no block-sized float64 temporary (1 GiB per GiB)
    for start in range(0, flat.size, SQUARES_CHUNK):
        wide = flat[start:start + SQUARES_CHUNK].astype(xp.float64)
        total += float(xp.dot(wide, wide).item())
    return total


def norm(x: "DistArray") -> float:
    """Collective: the 2-norm of all elements (squares summed in float64)."""
    return math.sqrt(_combine(x, local_squares(x)))


def dot(x: "DistArray", y: "DistArray") -> float:
    """Collective: the sum of ``x * y`` over all elements; both must share one layout."""
    if x.layout != y.layout:
        raise ValueError(f"dot needs one layout, got {x.layout.describe()} and {y.layout.describe()}")
    _accumulator(x.dtype)
    xp = backend.get_array_module(x.local)
    a = x.local.reshape(-1).astype(xp.float64, copy=False)  # (n,)
    b = y.local.reshape(-1).astype(xp.float64, copy=False)  # (n,)
    return _combine(x, float(xp.dot(a, b).item()))
