"""layers: locally connected filtering, L2 pooling and local contrast normalisation,
partitioned by output location across ranks, written against the distarray API only.

Activations are (H, W, C, B) DistArrays split over a 2-D grid of ranks along H and W. Each
layer splits its output locations over the grid, fetches the input box its windows read
(plans built once per batch size, the exchange overlapped with interior work) and adds
input gradients back into their owners. Serial kernels: :mod:`layers.lc_kernels`,
:mod:`layers.window_kernels`; serial references for the tests: :mod:`layers.reference`.
"""

from .geometry import Window
from .locally_connected import LocallyConnected2D, LocallyConnectedTranspose2D
from .normalization import LocalContrastNorm
from .pooling import L2Pooling

__all__ = ["L2Pooling", "LocalContrastNorm", "LocallyConnected2D", "LocallyConnectedTranspose2D", "Window"]
