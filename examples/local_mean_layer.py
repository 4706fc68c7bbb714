"""A new layer in one file, against distarray's public API: the k x k local mean.

    y[i, j, c, b] = mean over 0 <= di, dj < k of x[i + di, j + dj, c, b]   (valid windows)

The tutorial in docs/writing-a-layer.md walks through it; tests/examples/test_mpi_local_mean.py
checks it at 1-4 ranks against the serial reference below. The three steps of every layer here:

1. Plan (once, collective): the output's layout over the grid, the input box this rank's
   outputs read (its block grown by k - 1 rows and columns: a halo on one side), a FetchPlan
   bringing that box and an AccumulatePlan sending gradients back into it.
2. Communicate: the fetch (forward) or the accumulate (backward), the exact adjoint.
3. Compute: NumPy (or CuPy: ``xp``) on the local box, no messages.
"""

from __future__ import annotations

import numpy as np

import distarray as da


def reference(x: np.ndarray, k: int) -> np.ndarray:
    """Serial NumPy oracle: (H, W, C, B) -> (H-k+1, W-k+1, C, B)."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))  # (oh, ow, C, B, k, k)
    return windows.mean(axis=(-2, -1))


class LocalMean:
    """The k x k local mean of an (H, W, C, B) DistArray split over rows and columns of a 2-D grid."""

    def __init__(self, in_layout: da.Layout, k: int, grid: da.ProcessGrid):
        h, w, c, b = in_layout.shape
        if not 1 <= k <= min(h, w):
            raise ValueError(f"expected a window 1 <= k <= {min(h, w)}, got {k}")
        self.k, self.in_layout, self.grid = k, in_layout, grid
        # 1. plan: outputs split like the inputs, over the same grid
        self.out_layout = da.Layout.create((h - k + 1, w - k + 1, c, b), grid.dims, (0, 1, None, None),
                                           in_layout.dtype)
        out = self.out_layout.box(grid.rank)
        lo = (out.lo[0], out.lo[1], 0, 0)
        hi = (out.hi[0] + k - 1, out.hi[1] + k - 1, c, b) if out.size else lo  # no outputs: read nothing
        self.box = da.Box(lo, hi)
        self.fetch = da.FetchPlan(grid, in_layout, self.box)            # collective
        self.accumulate = da.AccumulatePlan(grid, in_layout, self.box)  # collective

    def forward(self, x: da.DistArray) -> da.DistArray:
        """Collective: y = local mean of x."""
        xb = self.fetch(x)  # 2. communicate: this rank's input box, (rows + k - 1, cols + k - 1, C, B)
        xp = da.get_array_module(xb)
        y = xp.zeros(self.out_layout.local_shape(self.grid.rank), xb.dtype)
        for di in range(self.k):  # 3. compute
            for dj in range(self.k):
                y += xb[di:di + y.shape[0], dj:dj + y.shape[1]]
        y /= self.k * self.k
        return da.DistArray(y, self.out_layout, self.grid)

    def backward(self, dy: da.DistArray) -> da.DistArray:
        """Collective: dL/dx from dL/dy (the adjoint of forward)."""
        xp = da.get_array_module(dy.local)
        dxb = xp.zeros(self.box.shape, dy.dtype)
        scaled = dy.local / (self.k * self.k)
        for di in range(self.k):  # 3. compute the box's gradient
            for dj in range(self.k):
                dxb[di:di + scaled.shape[0], dj:dj + scaled.shape[1]] += scaled
        dx = da.DistArray(xp.zeros(self.in_layout.local_shape(self.grid.rank), dy.dtype), self.in_layout, self.grid)
        self.accumulate(dx, dxb)  # 2. communicate: every rank's box added into the owners
        return dx


def main() -> None:
    """Smooth a random image twice on every rank of the job; rank 0 checks it (any rank count)."""
    from distarray import comm

    grid = da.ProcessGrid(da.factor_grid(comm.world().Get_size(), (64, 48)))
    image = np.random.default_rng(0).standard_normal((64, 48, 3, 2))
    x = da.from_global(image, grid, split=(0, 1, None, None))
    layer = LocalMean(x.layout, 5, grid)
    y = layer.forward(x)
    y = np.maximum(y, 0)  # NumPy's ufuncs work on DistArrays (no gather)
    mean = np.mean(y)  # collective, like every reduction: call it on every rank
    whole = y.gather()
    if grid.rank == 0:
        want = np.maximum(reference(image, 5), 0)
        print(f"local mean on grid {grid.dims}: max difference from the serial reference "
              f"{np.abs(whole - want).max():.3g}, mean {mean:.4f}")


if __name__ == "__main__":
    main()
