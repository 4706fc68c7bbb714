"""DistArray: a local block (NumPy or CuPy) plus the layout and grid it belongs to."""

from __future__ import annotations

import operator
from numbers import Integral
from typing import Any, Sequence

import numpy as np

from . import backend
from . import comm as _comm
from . import numpy_api, reductions
from .box import Box
from .exchange import AccumulatePlan, FetchPlan
from .grid import ProcessGrid
from .layout import Layout

__all__ = ["DistArray", "halo_box"]


def halo_box(layout: Layout, rank: int, widths: "int | Sequence") -> Box:
    """``rank``'s block grown by halo ``widths`` (pure).

    ``widths`` is an int (that many on both sides of every split axis, none on the others),
    one int per axis (both sides), or one ``(before, after)`` pair per axis.
    """
    try:
        if isinstance(widths, Integral):
            pairs = [(int(widths),) * 2 if s is not None else (0, 0) for s in layout.split]
        else:
            widths = list(widths)
            if len(widths) != layout.ndim:
                raise ValueError(f"expected halo widths for {layout.ndim} axes, got {len(widths)}: {widths}")
            pairs = [(int(w),) * 2 if isinstance(w, Integral) else tuple(operator.index(v) for v in w)
                     for w in widths]
    except TypeError:
        raise TypeError(f"expected halo widths as an int, ints or (before, after) pairs, got {widths!r}") from None
    if any(len(p) != 2 or min(p) < 0 for p in pairs):
        raise ValueError(f"expected non-negative halo widths, got {widths}")
    return layout.box(rank).expand(pairs)


class DistArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A global array cut into blocks over a :class:`ProcessGrid`; this rank holds one block.

    Build one with the constructors (:func:`~distarray.zeros`, :func:`~distarray.from_global`,
    :func:`~distarray.uniform`, ...) rather than directly.

    NumPy works on it where no gather is needed (:mod:`distarray.numpy_api`): ufuncs and
    arithmetic between arrays of one layout and with scalars (``x + y``, ``x *= 2``,
    ``np.exp(x)``), whole-array reductions (``np.sum(x)``, ``np.linalg.norm(x)``,
    ``np.vdot(x, y)``, collective), unit-step slices (``x[2:5, :]``, a copy); anything else
    (``np.asarray(x)``, ``np.sum(x, axis=0)``, ``x[3]``) raises TypeError saying what to do.

    Parameters
    ----------
    local : array
        This rank's block: C-contiguous, shape ``layout.local_shape(grid.rank)``.
    layout : Layout
        Global shape, dtype and blocks.
    grid : ProcessGrid
        The ranks.
    """

    def __init__(self, local: Any, layout: Layout, grid: ProcessGrid):
        if tuple(local.shape) != layout.local_shape(grid.rank) or local.dtype != layout.dtype:
            raise ValueError(
                f"expected a local block of shape {layout.local_shape(grid.rank)} and dtype "
                f"{layout.dtype}, got {tuple(local.shape)} and {local.dtype}"
            )
        if not local.flags.c_contiguous:
            raise ValueError("expected a C-contiguous local block")
        self.local = local
        self.layout = layout
        self.grid = grid

    # -- description ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Global shape."""
        return self.layout.shape

    @property
    def dtype(self) -> Any:
        """Element type."""
        return self.layout.dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return self.layout.ndim

    @property
    def box(self) -> Box:
        """The global box this rank owns."""
        return self.layout.box(self.grid.rank)

    @property
    def backend(self) -> str:
        """"numpy" or "cupy"."""
        return backend.backend_name(self.local)

    def __repr__(self) -> str:
        lay = self.layout
        held = ", ".join(f"{lo}:{hi}" for lo, hi in zip(self.box.lo, self.box.hi))
        return (f"DistArray(shape={lay.shape}, dtype={lay.dtype}, grid={lay.grid_shape}, split={lay.split}, "
                f"backend={self.backend}; rank {self.grid.rank} of {self.grid.size} holds [{held}])")

    # -- NumPy (distarray.numpy_api) -------------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return numpy_api.array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        return numpy_api.array_function(func, args, kwargs)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        raise TypeError(f"converting a DistArray of shape {self.shape} to a NumPy array would gather it: "
                        f"{numpy_api.GATHER_HINT}")

    def __getitem__(self, key: Any) -> "DistArray":
        return numpy_api.getitem(self, key)

    def __iter__(self) -> Any:
        raise TypeError(f"iterating over a DistArray would gather it: {numpy_api.GATHER_HINT}")

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d DistArray")
        return self.shape[0]

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a DistArray is ambiguous: use np.any(x) or np.all(x) (collective)")

    # -- plans -----------------------------------------------------------------------------
    def fetch_plan(self, box: "Box | Sequence") -> FetchPlan:
        """Collective: a reusable plan fetching ``box`` (this rank's) from arrays of this layout."""
        return FetchPlan(self.grid, self.layout, box)

    def accumulate_plan(self, box: "Box | Sequence") -> AccumulatePlan:
        """Collective: a reusable plan adding values over ``box`` into arrays of this layout."""
        return AccumulatePlan(self.grid, self.layout, box)

    def halo_plan(self, widths: "int | Sequence") -> FetchPlan:
        """Collective: a reusable plan fetching this rank's block grown by ``widths``
        (see :func:`halo_box`), corners included."""
        error, box = None, None
        try:
            box = halo_box(self.layout, self.grid.rank, widths)
        except (TypeError, ValueError) as exc:
            error = exc
        _comm.agree(self.grid.comm, error)
        return FetchPlan(self.grid, self.layout, box)

    # -- one-off exchanges (build a plan each call: keep the plan when you repeat) ----------
    def fetch(self, box: "Box | Sequence") -> Any:
        """Collective: this rank's ``box`` as a dense local array; zeros outside the bounds."""
        return self.fetch_plan(box)(self)

    def accumulate(self, box: "Box | Sequence", values: Any) -> None:
        """Collective: add every rank's ``values`` over its ``box`` into the owners' blocks."""
        self.accumulate_plan(box)(self, values)

    def halo(self, widths: "int | Sequence") -> Any:
        """Collective: this rank's block with a halo of ``widths`` around it, as a dense array."""
        return self.halo_plan(widths)(self)

    def redistribute(self, layout: Layout, grid: ProcessGrid | None = None) -> "DistArray":
        """Collective: a copy of this array in another layout (other grid, split or blocks).

        ``grid`` (default: this array's) must hold the same ranks in the same order.
        """
        grid = grid if grid is not None else self.grid
        _comm.same_everywhere(self.grid.comm, layout.describe(), "layouts to redistribute to")
        if not _comm.congruent(grid.comm, self.grid.comm):
            raise ValueError("redistribute needs a grid over the same ranks in the same order")
        if layout.shape != self.shape or layout.dtype != self.dtype or layout.grid_shape != grid.dims:
            raise ValueError(
                f"expected a layout of shape {self.shape}, dtype {self.dtype} on grid {grid.dims}, "
                f"got {layout.describe()}"
            )
        local = self.fetch_plan(layout.box(grid.rank))(self)
        return DistArray(local, layout, grid)

    # -- whole-array views -----------------------------------------------------------------
    def gather(self, root: int = 0) -> Any:
        """Collective: the whole array on ``root`` (None on the other ranks)."""
        if not 0 <= root < self.grid.size:
            raise ValueError(f"expected root in range({self.grid.size}), got {root}")
        everything = self.layout.bounds
        nothing = Box(everything.lo, everything.lo)
        whole = self.fetch_plan(everything if self.grid.rank == root else nothing)(self)
        return whole if self.grid.rank == root else None

    def allgather(self) -> Any:
        """Collective: the whole array on every rank."""
        return self.fetch(self.layout.bounds)

    def copy(self) -> "DistArray":
        """A copy with its own local block (local; no communication)."""
        return DistArray(self.local.copy(), self.layout, self.grid)

    # -- reductions (collective; the same value on every rank) ------------------------------
    def sum(self) -> float:
        """Collective: the sum of all elements (accumulated in float64; see :mod:`distarray.reductions`)."""
        return reductions.sum(self)

    def max(self) -> float:
        """Collective: the largest element."""
        return reductions.max(self)

    def min(self) -> float:
        """Collective: the smallest element."""
        return reductions.min(self)

    def norm(self) -> float:
        """Collective: the 2-norm of all elements."""
        return reductions.norm(self)

    def dot(self, other: "DistArray") -> float:
        """Collective: the sum of elementwise products with ``other`` (same layout)."""
        return reductions.dot(self, other)
