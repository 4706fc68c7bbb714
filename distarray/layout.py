"""Layout: how a global array is cut into blocks over a Cartesian grid of ranks.

Pure arithmetic, no MPI: every rank computes every rank's box from the same small
description, so no communication is needed to know who owns what.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from itertools import product
from typing import Sequence

import numpy as np

from .box import Box

__all__ = ["Layout", "balanced_blocks"]


def balanced_blocks(extent: int, parts: int) -> tuple[int, ...]:
    """Split ``extent`` into ``parts`` block extents differing by at most one (larger first)."""
    base, extra = divmod(extent, parts)
    return tuple(base + (1 if i < extra else 0) for i in range(parts))


@dataclass(frozen=True)
class Layout:
    """A global array's shape and dtype and its blocks over a grid of ranks.

    Attributes
    ----------
    shape : tuple of int
        Global shape.
    dtype : numpy.dtype
        Element type.
    grid_shape : tuple of int
        Ranks along each grid dimension; ranks are numbered row-major over it.
    split : tuple of (int or None)
        For every array axis, the grid dimension it is split over, or None.
    blocks : tuple of tuple of int
        For every array axis, the block extent at each coordinate of its grid dimension
        (a single extent, the whole axis, when it is not split). Uneven extents are allowed.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    grid_shape: tuple[int, ...]
    split: tuple[int | None, ...]
    blocks: tuple[tuple[int, ...], ...]

    @classmethod
    def create(
        cls,
        shape: Sequence[int],
        grid_shape: Sequence[int],
        split: Sequence[int | None] | None = None,
        dtype: "np.typing.DTypeLike" = np.float32,
        blocks: Sequence[Sequence[int] | None] | None = None,
    ) -> "Layout":
        """Build and validate a layout.

        Parameters
        ----------
        shape : sequence of int
            Global shape.
        grid_shape : sequence of int
            Ranks along each grid dimension.
        split : sequence of (int or None), optional
            Grid dimension for each array axis. Default: axis k over grid dimension k for
            the first ``len(grid_shape)`` axes, the rest not split.
        dtype : dtype-like
            Element type (default float32).
        blocks : sequence of (sequence of int or None), optional
            Explicit block extents per array axis; None (or a None entry) means balanced.

        Raises
        ------
        ValueError
            When the pieces do not fit together; the message names what was expected.
        """
        shape = tuple(int(s) for s in shape)
        grid_shape = tuple(int(g) for g in grid_shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"expected a shape of non-negative extents, got {shape}")
        if not grid_shape or any(g < 1 for g in grid_shape):
            raise ValueError(f"expected a grid shape of positive extents, got {grid_shape}")
        if split is None:
            if len(grid_shape) > len(shape):
                raise ValueError(
                    f"a {len(grid_shape)}-D grid {grid_shape} needs a split for a "
                    f"{len(shape)}-D array of shape {shape}"
                )
            split = tuple(range(len(grid_shape))) + (None,) * (len(shape) - len(grid_shape))
        split = tuple(None if s is None else int(s) for s in split)
        if len(split) != len(shape):
            raise ValueError(
                f"expected split with one entry per array axis ({len(shape)}), got {split}"
            )
        used = [s for s in split if s is not None]
        if any(s < 0 or s >= len(grid_shape) for s in used) or len(set(used)) != len(used):
            raise ValueError(
                f"split must name distinct grid dimensions in range({len(grid_shape)}), got {split}"
            )
        unused = [d for d in range(len(grid_shape)) if d not in used and grid_shape[d] > 1]
        if unused:
            raise ValueError(
                f"grid dimensions {unused} of grid {grid_shape} split no array axis "
                f"(split={split}); every grid dimension of size > 1 must split one axis"
            )
        blocks = [None] * len(shape) if blocks is None else list(blocks)
        if len(blocks) != len(shape):
            raise ValueError(
                f"expected blocks with one entry per array axis ({len(shape)}), got {len(blocks)}"
            )
        for k, s in enumerate(split):
            parts = 1 if s is None else grid_shape[s]
            if blocks[k] is None:
                blocks[k] = balanced_blocks(shape[k], parts)
            blocks[k] = tuple(int(b) for b in blocks[k])
            if len(blocks[k]) != parts or any(b < 0 for b in blocks[k]) or sum(blocks[k]) != shape[k]:
                raise ValueError(
                    f"axis {k}: expected {parts} non-negative block extents summing to "
                    f"{shape[k]}, got {blocks[k]}"
                )
        return cls(shape, np.dtype(dtype), grid_shape, split, tuple(blocks))

    # -- sizes -------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of array axes."""
        return len(self.shape)

    @property
    def nranks(self) -> int:
        """Number of ranks in the grid."""
        return int(np.prod(self.grid_shape))

    @property
    def bounds(self) -> Box:
        """The whole global index space as a box."""
        return Box((0,) * self.ndim, self.shape)

    # -- rank <-> grid coordinates (row-major, as MPI_Cart_create without reorder) -----
    def coords(self, rank: int) -> tuple[int, ...]:
        """Grid coordinates of ``rank``."""
        if not 0 <= rank < self.nranks:
            raise ValueError(f"expected rank in range({self.nranks}), got {rank}")
        return tuple(int(c) for c in np.unravel_index(rank, self.grid_shape))

    def rank_of(self, coords: Sequence[int]) -> int:
        """Rank at grid coordinates ``coords``."""
        return int(np.ravel_multi_index(tuple(coords), self.grid_shape))

    # -- boxes -------------------------------------------------------------------------
    def _offsets(self, axis: int) -> list[int]:
        """Global start of each block along ``axis`` (and the axis extent last)."""
        offs = [0]
        for b in self.blocks[axis]:
            offs.append(offs[-1] + b)
        return offs

    @cached_property
    def _boxes(self) -> dict[int, Box]:
        """Boxes computed so far, by rank (a Layout is immutable: each is computed once;
        layers ask for theirs several times a step)."""
        return {}

    def box(self, rank: int) -> Box:
        """The global box owned by ``rank``."""
        found = self._boxes.get(rank)
        if found is None:
            found = self._boxes[rank] = self._box(rank)
        return found

    def _box(self, rank: int) -> Box:
        """:meth:`box`, computed."""
        c = self.coords(rank)
        lo, hi = [], []
        for k, s in enumerate(self.split):
            i = 0 if s is None else c[s]
            offs = self._offsets(k)
            lo.append(offs[i])
            hi.append(offs[i + 1])
        return Box(tuple(lo), tuple(hi))

    def local_shape(self, rank: int) -> tuple[int, ...]:
        """Shape of the block owned by ``rank``."""
        return self.box(rank).shape

    def owner(self, index: Sequence[int]) -> int:
        """The rank owning global ``index``."""
        if len(index) != self.ndim or any(not 0 <= i < n for i, n in zip(index, self.shape)):
            raise IndexError(f"index {tuple(index)} is outside the global shape {self.shape}")
        coords = [0] * len(self.grid_shape)
        for k, s in enumerate(self.split):
            if s is not None:
                coords[s] = bisect.bisect_right(self._offsets(k), index[k]) - 1
                # skip zero-extent blocks that share the same offset
                while self.blocks[k][coords[s]] == 0:
                    coords[s] += 1
        return self.rank_of(coords)

    def owners(self, box: Box) -> list[int]:
        """Ranks whose blocks overlap ``box`` (parts outside the bounds are ignored), ascending."""
        ranges: list[range] = [range(1)] * len(self.grid_shape)
        for k, s in enumerate(self.split):
            lo, hi = max(box.lo[k], 0), min(box.hi[k], self.shape[k])
            if hi <= lo:
                return []
            if s is None:
                continue
            offs = self._offsets(k)
            first = bisect.bisect_right(offs, lo) - 1
            last = bisect.bisect_left(offs, hi) - 1
            ranges[s] = range(first, last + 1)
        ranks = [self.rank_of(c) for c in product(*ranges)]
        return sorted(r for r in ranks if self.box(r).intersect(box) is not None)

    def describe(self) -> str:
        """A one-line human-readable summary."""
        return (
            f"Layout(shape={self.shape}, dtype={self.dtype}, grid={self.grid_shape}, "
            f"split={self.split}, blocks={self.blocks})"
        )
