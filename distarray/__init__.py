"""distarray: a distributed array over MPI that hides communication.

Each rank holds one block of a global array (NumPy, or CuPy on GPUs). A rank names any box
of the global index space and :meth:`DistArray.fetch` brings it, the parts other ranks own
arriving by point-to-point messages; :meth:`DistArray.accumulate`, the exact adjoint, adds
values back into their owners. Plans are computed once and reused every step.
"""

from .array import DistArray, halo_box
from .backend import available_backends, get_array_module, gpu_available
from .box import Box, as_box
from .creation import (
    agreed_layout,
    empty,
    empty_like,
    from_global,
    full,
    normal,
    scatter,
    uniform,
    zeros,
    zeros_like,
)
from .device import use_local_gpu
from .exchange import AccumulatePlan, FetchPlan
from .grid import ProcessGrid, factor_grid
from .layout import Layout, balanced_blocks
from .pattern import Pattern, Piece, exchange_pattern
from .random import random_block, random_global

__version__ = "0.1.0"

__all__ = [
    "AccumulatePlan",
    "Box",
    "DistArray",
    "FetchPlan",
    "Layout",
    "Pattern",
    "Piece",
    "ProcessGrid",
    "agreed_layout",
    "as_box",
    "available_backends",
    "balanced_blocks",
    "empty",
    "empty_like",
    "exchange_pattern",
    "factor_grid",
    "from_global",
    "full",
    "get_array_module",
    "gpu_available",
    "halo_box",
    "normal",
    "random_block",
    "random_global",
    "scatter",
    "uniform",
    "use_local_gpu",
    "zeros",
    "zeros_like",
]
