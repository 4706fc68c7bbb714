"""L2 pooling over ranks: ``y = sqrt(eps + sum over a p x p window of x^2)``, map by map."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import distarray as da

from .geometry import Window
from .window_kernels import l2pool_backward, l2pool_forward
from .window_layer import FixedWindowLayer

__all__ = ["L2Pooling"]


class L2Pooling(FixedWindowLayer):
    """L2 pooling: each output is the root of ``eps`` plus the sum of squares of a p x p
    window of one map.

    Parameters
    ----------
    in_shape : (H, W, C)
        Input rows, columns, maps.
    p : int
        Window side.
    grid : ProcessGrid
        2-D grid of ranks over which output locations are split.
    stride, padding : int
        Window stride and zero padding (default 1 and 0: Le et al.'s pooling).
    eps : float
        Keeps the root differentiable at zero (default 1e-6).
    dtype, backend_name
        float32 or float64; "numpy" or "cupy".
    """

    def __init__(self, in_shape: Sequence[int], p: int, grid: da.ProcessGrid, stride: int = 1, padding: int = 0,
                 eps: float = 1e-6, dtype: Any = np.float32, backend_name: str = "numpy"):
        if eps < 0:
            raise ValueError(f"expected eps >= 0, got {eps}")
        super().__init__(in_shape, Window(p, stride, padding), grid, dtype, backend_name)
        self.eps = float(eps)

    def _forward_box(self, xb: Any, out: Any) -> None:
        l2pool_forward(xb, self.window.k, self.window.stride, self.eps, out=out)

    def _backward_box(self, xb: Any, y: Any, dy: Any) -> Any:
        return l2pool_backward(xb, y, dy, self.window.k, self.window.stride)
