"""Local contrast normalisation over ranks (Jarrett et al. 2009), one window per output.

For output location (i, j), with Gaussian weights g over the n x n window (sum 1) shared
by the C maps (each weighted g/C): ``mu`` is the weighted mean of the window over all maps,
``sigma`` the weighted standard deviation about it, and ``y[i, j, c] = (x[centre, c] - mu) /
max(floor, sigma)``. ``floor`` is a fixed constant, so the output of a location depends on
its window alone and never on how the image is split over ranks (Jarrett et al. divide by
max(mean sigma of the image, sigma), which would couple every rank). See
:mod:`layers.window_kernels` for the kernels.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import distarray as da

from .geometry import Window
from .window_kernels import lcn_backward, lcn_forward
from .window_layer import FixedWindowLayer

__all__ = ["LocalContrastNorm"]


class LocalContrastNorm(FixedWindowLayer):
    """Subtractive then divisive normalisation over a Gaussian n x n window across maps.

    Parameters
    ----------
    in_shape : (H, W, C)
        Input rows, columns, maps.
    n : int
        Window side (odd); outputs are (H - n + 1 + 2*padding) on a side.
    grid : ProcessGrid
        2-D grid of ranks over which output locations are split.
    sigma : float, optional
        Gaussian width in pixels (default n / 4).
    floor : float
        The divisor is max(floor, sigma_local) (default 0.1; > 0).
    padding : int
        Zero padding (default 0: Le et al.'s unpadded windows, 179 -> 175).
    dtype, backend_name
        float32 or float64; "numpy" or "cupy".
    """

    def __init__(self, in_shape: Sequence[int], n: int, grid: da.ProcessGrid, sigma: float | None = None,
                 floor: float = 0.1, padding: int = 0, dtype: Any = np.float32, backend_name: str = "numpy"):
        if int(n) % 2 != 1:
            raise ValueError(f"expected an odd window side n, got {n}")
        if not floor > 0:
            raise ValueError(f"expected floor > 0, got {floor}")
        sigma = n / 4.0 if sigma is None else float(sigma)
        if not sigma > 0:
            raise ValueError(f"expected sigma > 0, got {sigma}")
        super().__init__(in_shape, Window(n, 1, padding), grid, dtype, backend_name)
        self.sigma, self.floor = sigma, float(floor)

    def _forward_box(self, xb: Any, out: Any) -> None:
        lcn_forward(xb, self.window.k, self.sigma, self.floor, out=out)

    def _backward_box(self, xb: Any, y: Any, dy: Any) -> Any:
        return lcn_backward(xb, dy, self.window.k, self.sigma, self.floor)
