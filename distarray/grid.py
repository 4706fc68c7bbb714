"""ProcessGrid: a Cartesian grid of MPI ranks, and a helper to choose its shape."""

from __future__ import annotations

import math
import operator
from itertools import product
from typing import Sequence

from . import comm as _comm

__all__ = ["ProcessGrid", "factor_grid"]


def _factorizations(n: int, parts: int) -> list[tuple[int, ...]]:
    """Every ordered tuple of ``parts`` positive integers whose product is ``n``."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return [c for c in product(divisors, repeat=parts) if math.prod(c) == n]


def factor_grid(nranks: int, extents: Sequence[int]) -> tuple[int, ...]:
    """Choose grid dimensions (product ``nranks``) for splitting axes of the given extents.

    Minimises the total halo surface, the sum over axes of (cuts along the axis) x (the
    area of a cut), so blocks come out as square as the extents allow. Grids that leave a
    rank an empty block are used only when nothing else fits. Ties go to more ranks on
    earlier axes. Pure.

    Parameters
    ----------
    nranks : int
        Number of ranks (the product of the result).
    extents : sequence of int
        Extent of each array axis that may be split, in grid-dimension order.

    Examples
    --------
    >>> factor_grid(4, (200, 200))
    (2, 2)
    >>> factor_grid(3, (200, 200))
    (3, 1)
    """
    if nranks < 1 or not extents:
        raise ValueError(f"expected nranks >= 1 and at least one extent, got {nranks}, {extents}")

    def cost(dims: tuple[int, ...]) -> tuple:
        area = [math.prod(extents[:k]) * math.prod(extents[k + 1:]) for k in range(len(extents))]
        surface = sum((d - 1) * a for d, a in zip(dims, area))
        starved = any(d > e for d, e in zip(dims, extents))
        return (starved, surface, tuple(-d for d in dims))

    return min(_factorizations(nranks, len(extents)), key=cost)


class ProcessGrid:
    """A Cartesian grid of ranks over an MPI communicator.

    Collective to build: call on every rank of ``comm``. Ranks are numbered row-major over
    the grid (no reordering), so a :class:`~distarray.layout.Layout` maps ranks to grid
    coordinates without asking MPI.

    Parameters
    ----------
    dims : sequence of int, optional
        Ranks along each grid dimension; the product must equal the communicator's size.
        Default: a 1-D grid of all ranks.
    comm : MPI communicator, optional
        Default ``COMM_WORLD`` (size 1 without mpiexec).
    """

    def __init__(self, dims: Sequence[int] | None = None, comm: "_comm.Comm | None" = None):
        parent = comm if comm is not None else _comm.world()
        size = parent.Get_size()
        try:
            dims = (size,) if dims is None else tuple(operator.index(d) for d in dims)
        except TypeError:
            dims = repr(dims)  # reported below, on every rank
        _comm.same_everywhere(parent, dims, "grid dims")  # every rank judges the same list
        if isinstance(dims, str):
            raise TypeError(f"expected grid dims as a sequence of ints, got {dims}")
        if not dims or any(d < 1 for d in dims) or math.prod(dims) != size:
            raise ValueError(
                f"expected grid dims with product equal to the communicator size {size}, got {dims}"
            )
        self.dims: tuple[int, ...] = dims
        self.comm = _comm.create_cart(parent, dims)
        self.rank: int = self.comm.Get_rank()
        self.size: int = size
        self._tags = 0

    @classmethod
    def for_shape(
        cls, extents: Sequence[int], comm: "_comm.Comm | None" = None
    ) -> "ProcessGrid":
        """Collective: a grid over ``comm`` shaped by :func:`factor_grid` for these extents."""
        parent = comm if comm is not None else _comm.world()
        return cls(factor_grid(parent.Get_size(), extents), parent)

    @property
    def ndim(self) -> int:
        """Number of grid dimensions."""
        return len(self.dims)

    @property
    def coords(self) -> tuple[int, ...]:
        """This rank's grid coordinates."""
        return tuple(self.comm.Get_coords(self.rank))

    def next_tag(self) -> int:
        """A message tag for a new plan: the same on every rank when plans are built
        collectively in the same order, different from the previous ones."""
        self._tags += 1
        return 1 + self._tags % (_comm.tag_upper_bound(self.comm) - 1)

    def __repr__(self) -> str:
        return f"ProcessGrid(dims={self.dims}, rank={self.rank})"
