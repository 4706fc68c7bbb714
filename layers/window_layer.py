"""What every windowed layer shares: its output locations split over a 2-D grid, the input
box each rank reads, plans built once per batch size, and the exchange overlapped with the
interior work.

Forward: start fetching this rank's input box, compute the output locations whose windows
lie inside this rank's own input block (the interior) while the border rows and columns
travel, finish the fetch, compute the border. Backward: compute the border's input
gradients first, start adding the box into the owners (accumulate), compute the interior's
(they touch only this rank's own block, which the accumulate adds at its end) and the
weight gradients, finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import index
from time import perf_counter
from typing import Any, Callable, Sequence

import numpy as np

import distarray as da
from distarray.backend import namespace

from .geometry import Region, Window, border_regions, input_box, input_layout, interior, output_layout

__all__ = ["WindowLayer"]

Compute = Callable[[Any, Region], None]


@dataclass
class _Plans:
    """Everything a layer works out once per batch size."""

    in_layout: da.Layout
    out_layout: da.Layout
    box: da.Box
    fetch: da.FetchPlan
    accumulate: da.AccumulatePlan
    inner: Region
    borders: list[Region]


class WindowLayer:
    """Base of the layers: an (H, W, C, B) input, an (oh, ow, C', B) output, one window.

    Parameters
    ----------
    in_shape : (H, W, C)
        Input rows, columns and channels (the batch size is taken from the input).
    out_channels : int
        C' of the output.
    window : Window
        Side, stride and zero padding.
    grid : ProcessGrid
        A 2-D grid (rows, columns) of ranks; output locations are split over it.
    dtype : dtype-like
        float32 (default) or float64.
    backend_name : {"numpy", "cupy"}
        Where parameters and buffers live.
    """

    def __init__(self, in_shape: Sequence[int], out_channels: int, window: Window, grid: da.ProcessGrid,
                 dtype: Any = np.float32, backend_name: str = "numpy"):
        try:
            in_shape = tuple(index(n) for n in in_shape)
        except TypeError:
            raise TypeError(f"expected in_shape as (H, W, C) integers, got {in_shape!r}") from None
        if len(in_shape) != 3 or min(in_shape) < 1:
            raise ValueError(f"expected in_shape (H, W, C) of positive integers, got {in_shape}")
        if len(grid.dims) != 2:
            raise ValueError(f"expected a 2-D process grid (rows, columns), got grid dims {grid.dims}")
        self.in_shape = in_shape
        self.window = window
        self.grid = grid
        self.out_shape = (window.out_extent(in_shape[0], "input height"),
                          window.out_extent(in_shape[1], "input width"), int(out_channels))
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"expected dtype float32 or float64, got {self.dtype}")
        self.backend_name = backend_name
        self.xp = namespace(backend_name)
        self._plans: dict[int, _Plans] = {}
        self.comm_seconds = 0.0  # wall time inside exchange begin/end calls (not hidden by compute)
        block = output_layout(self.out_shape + (1,), grid.dims, self.dtype).box(grid.rank)
        self.block = (block.lo[:2], block.hi[:2])  # this rank's output locations, global

    # -- layouts and plans ---------------------------------------------------------------
    def input_layout(self, batch: int) -> da.Layout:
        """The layout inputs must have: (H, W, C, batch) split over the grid's rows and columns."""
        return input_layout(self.in_shape + (batch,), self.grid.dims, self.dtype)

    def output_layout(self, batch: int) -> da.Layout:
        """The layout of outputs (and of their gradients)."""
        return output_layout(self.out_shape + (batch,), self.grid.dims, self.dtype)

    def plans(self, batch: int) -> _Plans:
        """Collective the first time per batch size: build the fetch and accumulate plans."""
        if batch not in self._plans:
            in_layout, out_layout = self.input_layout(batch), self.output_layout(batch)
            out_block = out_layout.box(self.grid.rank)
            box = input_box(self.window, out_block, self.in_shape[2], batch)
            inner = interior(self.window, out_block, in_layout.box(self.grid.rank))
            self._plans[batch] = _Plans(
                in_layout, out_layout, box, da.FetchPlan(self.grid, in_layout, box),
                da.AccumulatePlan(self.grid, in_layout, box), inner,
                border_regions(out_layout.local_shape(self.grid.rank)[:2], inner),
            )
        return self._plans[batch]

    def check_array(self, x: Any, space: str, batch: int | None = None) -> int:
        """The batch size of ``x``; ValueError (on every rank alike: layouts are global
        metadata) unless ``x`` is a DistArray with this layer's ``space`` ("input" or
        "output") layout."""
        if not isinstance(x, da.DistArray):
            raise TypeError(f"expected the {space} as a DistArray, got {type(x).__name__}")
        expect = self.in_shape if space == "input" else self.out_shape
        if x.ndim != 4 or tuple(x.shape[:3]) != expect:
            raise ValueError(f"expected the {space} of global shape {expect + ('B',)}, got {x.shape}")
        if batch is not None and x.shape[3] != batch:
            raise ValueError(f"expected the {space} with batch size {batch}, got {x.shape[3]}")
        layout = (self.input_layout if space == "input" else self.output_layout)(x.shape[3])
        if x.layout != layout:
            raise ValueError(
                f"expected the {space} in this layer's layout ({layout.describe()}), got {x.layout.describe()}"
            )
        if x.backend != self.backend_name:
            raise ValueError(f"expected a {self.backend_name} {space}, got a {x.backend} one")
        return x.shape[3]

    # -- regions -------------------------------------------------------------------------
    @staticmethod
    def view(array: Any, region: Region) -> Any:
        """The output ``region``'s part of a per-location array (outputs, weights, bias)."""
        (i0, i1), (j0, j1) = region
        return array[i0:i1, j0:j1]

    def in_slices(self, region: Region) -> tuple[slice, slice]:
        """Slices of the input box read by the output ``region`` (local coordinates)."""
        (i0, i1), (j0, j1) = region
        s, k = self.window.stride, self.window.k
        return slice(s * i0, s * (i1 - 1) + k), slice(s * j0, s * (j1 - 1) + k)

    def fetch_and_compute(self, x: da.DistArray, compute: Compute) -> Any:
        """Fetch this rank's input box of ``x`` and call ``compute(xb, region)`` for the
        interior while messages travel, then for each border region (collective).
        Returns the box. ``x`` must have passed :meth:`check_array`: the plan does not check
        it again (no extra Allreduce per call)."""
        plans = self.plans(x.shape[3])
        xb = self.xp.empty(plans.box.shape, dtype=self.dtype)  # (Hb, Wb, C, B)
        start = perf_counter()
        plans.fetch.begin(x, out=xb, check=False)  # x passed check_array: global metadata, alike everywhere
        self.comm_seconds += perf_counter() - start
        (i0, i1), (j0, j1) = plans.inner
        if i1 > i0 and j1 > j0:
            compute(xb, plans.inner)
        start = perf_counter()
        plans.fetch.end()
        self.comm_seconds += perf_counter() - start
        for region in plans.borders:
            compute(xb, region)
        return xb

    def compute_and_accumulate(self, batch: int, compute: Compute, overlap: Callable[[], None]) -> da.DistArray:
        """Build the input gradient: ``compute(dxb, region)`` adds each region's part into
        the box, border first; the accumulate into a new input-layout array runs while the
        interior and ``overlap()`` (weight gradients) are computed (collective)."""
        plans = self.plans(batch)
        dxb = self.xp.zeros(plans.box.shape, dtype=self.dtype)  # (Hb, Wb, C, B)
        for region in plans.borders:
            compute(dxb, region)
        dx = da.DistArray(self.xp.zeros(plans.in_layout.local_shape(self.grid.rank), dtype=self.dtype),
                          plans.in_layout, self.grid)
        start = perf_counter()
        plans.accumulate.begin(dx, dxb, check=False)  # both built here, in the plan's layout
        self.comm_seconds += perf_counter() - start
        (i0, i1), (j0, j1) = plans.inner
        if i1 > i0 and j1 > j0:
            compute(dxb, plans.inner)  # touches only this rank's own block: added at end()
        overlap()
        start = perf_counter()
        plans.accumulate.end()
        self.comm_seconds += perf_counter() - start
        return dx

    def new_output(self, batch: int) -> da.DistArray:
        """An uninitialised output-layout array."""
        layout = self.plans(batch).out_layout
        return da.DistArray(self.xp.empty(layout.local_shape(self.grid.rank), dtype=self.dtype), layout, self.grid)


class FixedWindowLayer(WindowLayer):
    """A layer without parameters, channel by channel or across channels: subclasses give
    ``_forward_box(xb, out)`` and ``_backward_box(xb, y, dy)`` (the box's input gradient).

    Collective: call ``forward``/``backward`` on every rank of the grid.
    """

    def __init__(self, in_shape: Sequence[int], window: Window, grid: da.ProcessGrid, dtype: Any = np.float32,
                 backend_name: str = "numpy"):
        super().__init__(in_shape, in_shape[2] if len(in_shape) == 3 else 0, window, grid, dtype, backend_name)
        self._saved: tuple | None = None

    def _forward_box(self, xb: Any, out: Any) -> None:
        raise NotImplementedError

    def _backward_box(self, xb: Any, y: Any, dy: Any) -> Any:
        raise NotImplementedError

    def forward(self, x: da.DistArray) -> da.DistArray:
        """Outputs (oh, ow, C, B) in the output layout; saves what backward needs."""
        batch = self.check_array(x, "input")
        y = self.new_output(batch)

        def compute(xb: Any, region: Region) -> None:
            self._forward_box(xb[self.in_slices(region)], self.view(y.local, region))

        xb = self.fetch_and_compute(x, compute)
        self._saved = (xb, y.local, batch)
        return y

    def backward(self, dy: da.DistArray) -> da.DistArray:
        """Input gradient in the input layout."""
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")
        xb, y, batch = self._saved
        self.check_array(dy, "output", batch)

        def compute(dxb: Any, region: Region) -> None:
            rows, cols = self.in_slices(region)
            dxb[rows, cols] += self._backward_box(xb[rows, cols], self.view(y, region), self.view(dy.local, region))

        return self.compute_and_accumulate(batch, compute, lambda: None)
