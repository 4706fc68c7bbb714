"""layers: locally connected filtering, L2 pooling and local contrast normalisation,
partitioned by output location across ranks, written against the distarray API only.

Activations are (H, W, C, B) DistArrays split over a 2-D grid of ranks along H and W. Each
layer splits its output locations over the grid, fetches the input box its windows read
(plans built once per batch size, the exchange overlapped with interior work) and adds
input gradients back into their owners. Serial kernels: :mod:`layers.lc_kernels`,
:mod:`layers.window_kernels`; serial references for the tests: :mod:`layers.reference`.
"""

from __future__ import annotations

from distarray.lazy import exports

#: Where each public name lives; loaded on first use (PEP 562), so that ``layers.geometry``
#: and the kernels import without loading MPI.
_WHERE = {"Window": "geometry", "LocallyConnected2D": "locally_connected",
          "LocallyConnectedTranspose2D": "locally_connected", "LocalContrastNorm": "normalization",
          "L2Pooling": "pooling"}

__all__ = ["L2Pooling", "LocalContrastNorm", "LocallyConnected2D", "LocallyConnectedTranspose2D", "Window"]

__getattr__, __dir__ = exports(__name__, _WHERE)
