"""Locally connected filtering (untied weights) and its transpose, the decoder, over ranks.

Each rank owns the output locations of its block of the grid and their weights; weights
never move. Forward fetches the input box the block's windows read (halo included) and
runs the batched GEMMs of :mod:`layers.lc_kernels`; backward computes weight and bias
gradients locally and adds the input gradient into the owners with an accumulate.

The transpose layer maps the output space back to the input space with its own weights:
``xhat = sum over locations of w2[i, j]^T @ h[i, j]``, overlap-added at each window (the
decoder of the sparse autoencoder). Its forward is the filtering layer's input gradient
(an accumulate) and its backward the filtering layer's forward (a fetch).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

import distarray as da

from .geometry import Region, Window
from .lc_kernels import fan_in, lc_forward, lc_input_grad, lc_weight_grad
from .window_layer import WindowLayer

__all__ = ["LocallyConnected2D", "LocallyConnectedTranspose2D"]


class _Filters(WindowLayer):
    """Weights (oh, ow, M, K) with the output locations' layout, and their gradients."""

    def __init__(self, in_shape: Sequence[int], maps: int, k: int, stride: int, padding: int,
                 grid: da.ProcessGrid, seed: int, dtype: Any, backend_name: str, init_scale: float | None,
                 tied_to: "_Filters | None" = None):
        super().__init__(in_shape, maps, Window(k, stride, padding), grid, dtype, backend_name)
        if int(maps) < 1:
            raise ValueError(f"expected maps >= 1, got {maps}")
        self.maps = int(maps)
        self.fan_in = fan_in(k, self.in_shape[2])
        scale = 1.0 / math.sqrt(self.fan_in) if init_scale is None else float(init_scale)
        shape = self.out_shape[:2] + (self.maps, self.fan_in)
        self._grad_weight: da.DistArray | None = None
        self._tied_to = tied_to
        self._saved: tuple | None = None
        if tied_to is not None:  # one parameter for both layers; nothing drawn
            if tied_to.weight.shape != shape or tied_to.grid is not grid:
                raise ValueError(f"expected a layer with weights of shape {shape} on the same grid to tie to, got "
                                 f"{tied_to.weight.shape}")
            self.weight = tied_to.weight
            return
        # depends on seed and global index only: the same network on any number of ranks
        self.weight = da.uniform(shape, grid, seed, -scale, scale, split=(0, 1, None, None),
                                 dtype=self.dtype, backend_name=backend_name)  # (oh, ow, M, K)

    @property
    def grad_weight(self) -> da.DistArray:
        """The weight gradient, allocated (zero) at first use and kept until
        :meth:`release_gradients`: training one stage of many holds only its gradients.
        Tied (``tied_to``): the other layer's."""
        if self._tied_to is not None:
            return self._tied_to.grad_weight
        if self._grad_weight is None:
            self._grad_weight = da.zeros_like(self.weight)
        return self._grad_weight

    def release_gradients(self) -> None:
        """Free the gradient arrays (they are allocated again, zero, when next needed)."""
        self._grad_weight = None

    def parameters(self) -> dict[str, da.DistArray]:
        """The layer's parameters by name (each rank holds its locations' part)."""
        return {"weight": self.weight}

    def gradients(self) -> dict[str, da.DistArray]:
        """Gradients from the last backward, named as :meth:`parameters`."""
        return {"weight": self.grad_weight}

    def normalise_filters(self, norm: float = 1.0) -> None:
        """Scale every filter (each location's and map's K weights) to Euclidean norm ``norm``,
        in place: the projection of a unit-norm constraint. Local: this rank's locations only,
        no messages, and the same bits on any number of ranks. An all-zero filter stays zero."""
        w = self.weight.local  # (oh_local, ow_local, M, K)
        if w.size == 0:
            return
        xp = self.xp
        norms = xp.sqrt(xp.sum(w * w, axis=3, keepdims=True, dtype=np.float64))  # (.., M, 1)
        w *= (norm / xp.where(norms > 0, norms, 1.0)).astype(w.dtype)

    def _saved_for(self, what: str) -> tuple:
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward(): nothing saved for {what}")
        return self._saved


class LocallyConnected2D(_Filters):
    """Locally connected filtering: every output location has its own ``maps`` filters.

    ``y[i, j] (M x B) = weight[i, j] (M x K) @ patch(x, i, j) (K x B) + bias[i, j]``, K =
    k*k*C, fan-in ordered (dj, di, c) (see :mod:`layers.lc_kernels`; :meth:`filters` gives
    them as (oh, ow, M, k, k, C) images).

    Parameters
    ----------
    in_shape : (H, W, C)
        Input rows, columns, channels.
    maps : int
        Filters per output location (M).
    k : int
        Receptive field side.
    stride, padding : int
        Window stride and zero padding on every side (default 1 and 0).
    grid : ProcessGrid
        2-D grid of ranks over which output locations are split.
    seed : int
        Weights are uniform on [-1/sqrt(K), 1/sqrt(K)) (or ``init_scale``), drawn from
        ``seed`` and the global index: identical on any number of ranks.
    bias : bool
        Add a per-location, per-map bias (initialised to 0).
    dtype, backend_name
        float32 or float64; "numpy" or "cupy".

    Collective: construct, and call ``forward``/``backward``, on every rank of ``grid``.
    """

    def __init__(self, in_shape: Sequence[int], maps: int, k: int, grid: da.ProcessGrid, stride: int = 1,
                 padding: int = 0, seed: int = 0, bias: bool = True, dtype: Any = np.float32,
                 backend_name: str = "numpy", init_scale: float | None = None):
        super().__init__(in_shape, maps, k, stride, padding, grid, seed, dtype, backend_name, init_scale)
        self.bias = None
        self._grad_bias: da.DistArray | None = None
        if bias:
            self.bias = da.zeros(self.out_shape, grid, split=(0, 1, None), dtype=self.dtype,
                                 backend_name=backend_name)  # (oh, ow, M)

    @property
    def grad_bias(self) -> da.DistArray | None:
        """The bias gradient (allocated at first use), or None without a bias."""
        if self.bias is not None and self._grad_bias is None:
            self._grad_bias = da.zeros_like(self.bias)
        return self._grad_bias

    def release_gradients(self) -> None:
        super().release_gradients()
        self._grad_bias = None

    def parameters(self) -> dict[str, da.DistArray]:
        params = super().parameters()
        if self.bias is not None:
            params["bias"] = self.bias
        return params

    def gradients(self) -> dict[str, da.DistArray]:
        grads = super().gradients()
        if self.bias is not None:
            grads["bias"] = self.grad_bias
        return grads

    def forward(self, x: da.DistArray) -> da.DistArray:
        """Outputs (oh, ow, M, B) in the output layout; saves the input box for backward."""
        batch = self.check_array(x, "input")
        y = self.new_output(batch)
        w, k, s = self.weight.local, self.window.k, self.window.stride
        bias = None if self.bias is None else self.bias.local

        def compute(xb: Any, region: Region) -> None:
            rows, cols = self.in_slices(region)
            lc_forward(xb[rows, cols], self.view(w, region), k, s,
                       bias=None if bias is None else self.view(bias, region), out=self.view(y.local, region))

        xb = self.fetch_and_compute(x, compute)
        self._saved = (xb, batch)
        return y

    def backward(self, dy: da.DistArray, input_grad: bool = True, weight_grad: bool = True,
                 accumulate: bool = False) -> da.DistArray | None:
        """Input gradient (input layout); weight and bias gradients into ``grad_weight``
        and ``grad_bias`` (overwritten). With ``input_grad=False`` (the first layer of a
        network: nothing upstream) only the parameter gradients are computed, no exchange
        runs, and None is returned (pass the same value on every rank). With
        ``weight_grad=False`` (gradients with respect to the input only, as when
        optimising a stimulus) the parameter gradients are left as they were; with
        ``accumulate`` the weight gradient is added to ``grad_weight`` (tied weights)."""
        xb, batch = self._saved_for("the input")
        self.check_array(dy, "output", batch)
        w, k, s = self.weight.local, self.window.k, self.window.stride

        def compute(dxb: Any, region: Region) -> None:
            rows, cols = self.in_slices(region)
            sub = dxb[rows, cols]
            lc_input_grad(self.view(w, region), self.view(dy.local, region), k, s, sub.shape[:2], out=sub)

        def weight_grads() -> None:
            if not weight_grad:
                return
            lc_weight_grad(xb, dy.local, k, s, out=self.grad_weight.local, accumulate=accumulate)
            if self.bias is not None:
                dy.local.sum(axis=3, out=self.grad_bias.local)

        if not input_grad:
            weight_grads()
            return None
        return self.compute_and_accumulate(batch, compute, weight_grads)

    def filters(self) -> Any:
        """This rank's filters as images: (oh_local, ow_local, M, k, k, C), rows then columns."""
        k, c = self.window.k, self.in_shape[2]
        w = self.weight.local.reshape(self.weight.local.shape[:3] + (k, k, c))  # (.., dj, di, C)
        return w.swapaxes(3, 4)


class LocallyConnectedTranspose2D(_Filters):
    """The transpose of :class:`LocallyConnected2D` with its own weights: the decoder.

    Maps (oh, ow, M, B) in the output space of a filtering layer with the same ``in_shape``,
    ``k``, ``stride``, ``padding`` and ``grid`` back to (H, W, C, B):
    ``xhat = sum_(i, j) overlap-add of weight[i, j]^T @ h[i, j]``. No bias. Arguments as
    :class:`LocallyConnected2D`, and ``tied_to``: a filtering layer whose weights and weight
    gradient this one uses (tied weights: nothing drawn; that layer's backward must then
    accumulate its weight gradient, ``backward(accumulate=True)``). Collective likewise.
    """

    def __init__(self, in_shape: Sequence[int], maps: int, k: int, grid: da.ProcessGrid, stride: int = 1,
                 padding: int = 0, seed: int = 0, dtype: Any = np.float32, backend_name: str = "numpy",
                 init_scale: float | None = None, tied_to: LocallyConnected2D | None = None):
        super().__init__(in_shape, maps, k, stride, padding, grid, seed, dtype, backend_name, init_scale, tied_to)

    def forward(self, h: da.DistArray) -> da.DistArray:
        """Reconstruction (H, W, C, B) in the input layout (an accumulate); saves ``h``."""
        batch = self.check_array(h, "output")
        w, k, s = self.weight.local, self.window.k, self.window.stride

        def compute(xb: Any, region: Region) -> None:
            rows, cols = self.in_slices(region)
            sub = xb[rows, cols]
            lc_input_grad(self.view(w, region), self.view(h.local, region), k, s, sub.shape[:2], out=sub)

        xhat = self.compute_and_accumulate(batch, compute, lambda: None)
        self._saved = (h.local, batch)
        return xhat

    def backward(self, dxhat: da.DistArray) -> da.DistArray:
        """Gradient with respect to ``h`` (output layout); weight gradient into ``grad_weight``."""
        h, batch = self._saved_for("h")
        self.check_array(dxhat, "input", batch)
        dh = self.new_output(batch)
        w, k, s = self.weight.local, self.window.k, self.window.stride

        def compute(gb: Any, region: Region) -> None:
            rows, cols = self.in_slices(region)
            lc_forward(gb[rows, cols], self.view(w, region), k, s, out=self.view(dh.local, region))

        gb = self.fetch_and_compute(dxhat, compute)
        lc_weight_grad(gb, h, k, s, out=self.grad_weight.local)
        return dh
