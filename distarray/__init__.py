"""distarray: a distributed array over MPI that hides communication.

Each rank holds one block of a global array (NumPy, or CuPy on GPUs). A rank names any box
of the global index space and :meth:`DistArray.fetch` brings it, the parts other ranks own
arriving by point-to-point messages; :meth:`DistArray.accumulate`, the exact adjoint, adds
values back into their owners. Plans are computed once and reused every step.
"""

from __future__ import annotations

from .lazy import exports

#: The public names by module. They load on first use (PEP 562), so that the pure modules
#: (box, layout, pattern, random, backend) import without loading MPI.
_MODULES = {
    "array": ("DistArray", "halo_box"),
    "backend": ("available_backends", "get_array_module", "gpu_available"),
    "box": ("Box", "as_box"),
    "creation": ("agreed_layout", "empty", "empty_like", "from_global", "full", "normal", "scatter", "uniform",
                 "zeros", "zeros_like"),
    "device": ("use_local_gpu",),
    "exchange": ("AccumulatePlan", "FetchPlan"),
    "grid": ("ProcessGrid", "factor_grid"),
    "layout": ("Layout", "balanced_blocks"),
    "pattern": ("Pattern", "Piece", "exchange_pattern"),
    "random": ("random_block", "random_global"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__version__ = "0.1.0"

__all__ = sorted(_WHERE)

__getattr__, __dir__ = exports(__name__, _WHERE)
