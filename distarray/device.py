"""GPU selection: one GPU per rank on a node."""

from __future__ import annotations

from . import backend
from . import comm as _comm

__all__ = ["use_local_gpu"]


def use_local_gpu(comm: "_comm.Comm | None" = None) -> int:
    """Collective: make this rank use GPU ``local_rank % gpus_on_node``; returns its index.

    Call once at start-up, before creating CuPy arrays, on every rank of ``comm`` (default
    ``COMM_WORLD``): ranks on one node then spread over its GPUs instead of all using GPU 0.

    Raises
    ------
    RuntimeError
        On every rank when any rank sees no GPU.
    """
    comm = comm if comm is not None else _comm.world()
    local = _comm.local_rank(comm)
    error = None if backend.gpu_available() else RuntimeError(
        "use_local_gpu: CuPy is not installed or sees no GPU on this rank"
    )
    _comm.agree(comm, error)
    return backend.use_device(local)
