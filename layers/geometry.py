"""Window arithmetic shared by the layers: output sizes, the input box a block of outputs
reads, and the interior of a block whose windows stay inside this rank's own input (pure).

Every layer here maps an (H, W, C, B) input to an (oh, ow, C', B) output through a square
window of side ``k`` moved by ``stride`` over the input zero-padded by ``padding``. Output
location (i, j) reads input rows ``[s*i - p, s*i - p + k)`` and the same columns, in global
coordinates; rows outside [0, H) are the zero padding, which a fetch supplies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from operator import index
from typing import Sequence

import numpy as np

from distarray import Box, Layout

__all__ = ["Window", "output_layout", "input_layout", "input_box", "interior", "border_regions"]

Region = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class Window:
    """A square window: side ``k``, ``stride`` and zero ``padding`` (on every side)."""

    k: int
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        try:
            values = (index(self.k), index(self.stride), index(self.padding))
        except TypeError:
            raise TypeError(
                f"expected integer k, stride and padding, got {self.k!r}, {self.stride!r}, {self.padding!r}"
            ) from None
        if values[0] < 1 or values[1] < 1 or values[2] < 0:
            raise ValueError(
                f"expected k >= 1, stride >= 1 and padding >= 0, got k={self.k}, "
                f"stride={self.stride}, padding={self.padding}"
            )

    def out_extent(self, extent: int, what: str = "input") -> int:
        """Output locations along an axis of ``extent`` inputs; ValueError when the padded
        input is smaller than the window."""
        padded = extent + 2 * self.padding
        if padded < self.k:
            raise ValueError(
                f"expected an {what} of at least {self.k - 2 * self.padding} for a {self.k}x{self.k} window with padding {self.padding}, got {extent}"
            )
        return (padded - self.k) // self.stride + 1

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """Global input range [a, b) read by output locations [lo, hi) (empty when they are)."""
        a = lo * self.stride - self.padding
        if hi <= lo:
            return a, a
        return a, (hi - 1) * self.stride - self.padding + self.k


def _spatial_layout(shape: Sequence[int], grid_shape: Sequence[int], dtype) -> Layout:
    """(H, W, C, B) split over a 2-D grid along H and W, balanced blocks."""
    if len(grid_shape) != 2:
        raise ValueError(f"expected a 2-D process grid (rows, columns), got grid dims {tuple(grid_shape)}")
    return _cached_spatial_layout(tuple(int(n) for n in shape), tuple(int(g) for g in grid_shape), np.dtype(dtype))


@lru_cache(maxsize=256)
def _cached_spatial_layout(shape: tuple[int, ...], grid_shape: tuple[int, ...], dtype: np.dtype) -> Layout:
    """:func:`_spatial_layout`, built once per (shape, grid, dtype): a layer asks for its
    layouts several times a step, and a Layout is immutable, so every caller may share one."""
    return Layout.create(shape, grid_shape, split=(0, 1, None, None), dtype=dtype)


def output_layout(out_shape: Sequence[int], grid_shape: Sequence[int], dtype) -> Layout:
    """The layout of a layer's outputs (oh, ow, C', B): output locations split over the grid."""
    return _spatial_layout(out_shape, grid_shape, dtype)


def input_layout(in_shape: Sequence[int], grid_shape: Sequence[int], dtype) -> Layout:
    """The layout a layer expects its (H, W, C, B) inputs in (the default of
    :func:`distarray.zeros` on a 2-D grid)."""
    return _spatial_layout(in_shape, grid_shape, dtype)


def input_box(window: Window, out_block: Box, channels: int, batch: int) -> Box:
    """The 4-D input box (global coordinates, may reach into the padding) that the output
    locations of ``out_block`` read."""
    rows = window.span(out_block.lo[0], out_block.hi[0])
    cols = window.span(out_block.lo[1], out_block.hi[1])
    return Box((rows[0], cols[0], 0, 0), (rows[1], cols[1], channels, batch))


def interior(window: Window, out_block: Box, owned: Box) -> Region:
    """Local output ranges ((i0, i1), (j0, j1)) of ``out_block`` whose windows lie inside
    ``owned`` (this rank's input block): the work that needs no message."""
    ranges = []
    for axis in (0, 1):
        lo, hi = out_block.lo[axis], out_block.hi[axis]
        s, p, k = window.stride, window.padding, window.k
        first = max(lo, -(-(owned.lo[axis] + p) // s))  # s*i - p >= owned.lo
        last = min(hi, (owned.hi[axis] + p - k) // s + 1)  # s*i - p + k <= owned.hi
        if owned.hi[axis] <= owned.lo[axis] or last <= first:
            first = last = lo
        ranges.append((first - lo, last - lo))
    return ranges[0], ranges[1]


def border_regions(shape: tuple[int, int], inner: Region) -> list[Region]:
    """Up to four rectangles covering the (oh, ow) block ``shape`` outside ``inner``."""
    (i0, i1), (j0, j1) = inner
    oh, ow = shape
    if i1 <= i0 or j1 <= j0:
        return [((0, oh), (0, ow))] if oh and ow else []
    parts = [((0, i0), (0, ow)), ((i1, oh), (0, ow)), ((i0, i1), (0, j0)), ((i0, i1), (j1, ow))]
    return [r for r in parts if r[0][1] > r[0][0] and r[1][1] > r[1][0]]
