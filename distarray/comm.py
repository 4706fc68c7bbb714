"""Everything that touches MPI: the only module that imports ``mpi4py.MPI``.

Thin, explicit wrappers; no attribute forwarding to the raw communicator. Functions that
communicate say so ("Collective: call on every rank of ``comm``").
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any, Sequence

import numpy as np
from mpi4py import MPI
from mpi4py.util import dtlib

from . import backend

__all__ = [
    "Comm",
    "Request",
    "RemoteError",
    "world",
    "create_cart",
    "congruent",
    "split",
    "allgather",
    "broadcast",
    "exact_sums",
    "allreduce_array",
    "agree",
    "same_everywhere",
    "allreduce",
    "subarray_type",
    "isend",
    "irecv",
    "waitall",
    "sendrecv",
    "barrier",
    "abort",
    "local_rank",
    "tag_upper_bound",
    "wtime",
    "library_version",
    "cuda_aware",
]

Comm = MPI.Comm
Request = MPI.Request

_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
_SHARED_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "IndexError": IndexError}


class RemoteError(RuntimeError):
    """Raised on every rank when another rank found an error of a kind not re-raised as is."""


def self_comm() -> MPI.Comm:
    """COMM_SELF: this rank alone (for a serial twin of a distributed computation)."""
    return MPI.COMM_SELF


def world() -> MPI.Comm:
    """``MPI.COMM_WORLD`` (size 1 when run without mpiexec)."""
    return MPI.COMM_WORLD


def create_cart(comm: MPI.Comm, dims: Sequence[int]) -> MPI.Cartcomm:
    """Collective: a non-periodic Cartesian communicator, ranks kept in row-major order."""
    return comm.Create_cart(list(dims), periods=[False] * len(dims), reorder=False)


def congruent(a: MPI.Comm, b: MPI.Comm) -> bool:
    """True when two communicators hold the same ranks in the same order."""
    return MPI.Comm.Compare(a, b) in (MPI.IDENT, MPI.CONGRUENT)


def split(comm: MPI.Comm, color: int, key: int) -> MPI.Comm:
    """Collective: the sub-communicator of the ranks that pass the same ``color``, ordered by ``key``."""
    return comm.Split(int(color), int(key))


def allreduce_array(comm: MPI.Comm, array: Any, op: str = "sum") -> None:
    """Collective: replace ``array`` (C-contiguous, host or device) by its elementwise
    reduction with ``op`` ("sum", "max" or "min") over the ranks of ``comm``, in place. Device
    arrays are staged through host memory unless MPI is CUDA-aware."""
    if not array.flags.c_contiguous:
        raise ValueError("allreduce_array needs a C-contiguous array")
    if backend.is_device_array(array) and not cuda_aware():
        host = backend.to_host(array)
        comm.Allreduce(MPI.IN_PLACE, host, op=_OPS[op])
        array[...] = backend.like(host, array)
        return
    backend.synchronize(array)
    comm.Allreduce(MPI.IN_PLACE, array, op=_OPS[op])


def allgather(comm: MPI.Comm, obj: Any) -> list:
    """Collective: every rank's (picklable) ``obj``, indexed by rank."""
    return comm.allgather(obj)


def broadcast(comm: MPI.Comm, obj: Any, root: int = 0) -> Any:
    """Collective: rank ``root``'s (picklable) ``obj`` on every rank."""
    return comm.bcast(obj, root=root)


def exact_sums(comm: MPI.Comm, partials: Sequence[float]) -> list[float]:
    """Collective: position by position, the sum over ranks of every rank's ``partials``
    (floats, the same count on every rank), exactly rounded (``math.fsum``): every rank gets
    the same floats, whatever order the parts arrive in."""
    gathered = comm.allgather([float(v) for v in partials])
    return [math.fsum(column) for column in zip(*gathered)]


def allreduce(comm: MPI.Comm, value: Any, op: str = "sum") -> Any:
    """Collective: reduce a Python scalar over ranks with ``op`` in ("sum", "max", "min")."""
    return comm.allreduce(value, op=_OPS[op])


def agree(comm: MPI.Comm, error: BaseException | None) -> None:
    """Collective: raise on every rank when any rank passes an error.

    The rank that found the error re-raises it; the others raise the same built-in type
    (ValueError, TypeError, IndexError; else RemoteError) with the message prefixed by
    the rank. One small Allreduce when nothing is wrong.
    """
    flag = np.array([0 if error is None else 1], dtype=np.int32)
    comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
    if not flag[0]:
        return
    found = None if error is None else (type(error).__name__, str(error))
    reports = comm.allgather(found)
    if error is not None:
        raise error
    first = next(r for r, f in enumerate(reports) if f is not None)
    name, message = reports[first]
    raise _SHARED_ERRORS.get(name, RemoteError)(f"rank {first}: {message}")


def same_everywhere(comm: MPI.Comm, value: Any, what: str) -> None:
    """Collective: raise ValueError on every rank unless every rank passed an equal ``value``."""
    seen = comm.allgather(value)
    if any(v != seen[0] for v in seen):
        listed = "; ".join(f"rank {r}: {v}" for r, v in enumerate(seen))
        raise ValueError(f"ranks differ in {what}: {listed}")


def subarray_type(shape: Sequence[int], subshape: Sequence[int], starts: Sequence[int],
                  dtype: np.dtype) -> MPI.Datatype:
    """A committed MPI datatype selecting a sub-box of a C-order array (``MPI_Type_create_subarray``):
    MPI then reads or writes the strided piece in place, with no packing copy."""
    base = dtlib.from_numpy_dtype(np.dtype(dtype))
    return base.Create_subarray(list(shape), list(subshape), list(starts), order=MPI.ORDER_C).Commit()


def isend(comm: MPI.Comm, buf: Any, dest: int, tag: int, datatype: MPI.Datatype | None = None) -> MPI.Request:
    """Start sending contiguous array ``buf`` (host, or device when MPI is CUDA-aware), or
    the part of it that ``datatype`` (from :func:`subarray_type`) selects."""
    return comm.Isend(buf if datatype is None else [buf, 1, datatype], dest=dest, tag=tag)


def irecv(comm: MPI.Comm, buf: Any, source: int, tag: int, datatype: MPI.Datatype | None = None) -> MPI.Request:
    """Start receiving into contiguous array ``buf``, or into the part ``datatype`` selects."""
    return comm.Irecv(buf if datatype is None else [buf, 1, datatype], source=source, tag=tag)


def waitall(requests: Sequence[MPI.Request]) -> None:
    """Complete every request."""
    if requests:
        MPI.Request.Waitall(list(requests))


def sendrecv(comm: MPI.Comm, sendbuf: Any, dest: int, recvbuf: Any, source: int, tag: int = 0) -> None:
    """Send ``sendbuf`` to ``dest`` while receiving ``recvbuf`` from ``source`` (raw MPI)."""
    comm.Sendrecv(sendbuf, dest=dest, sendtag=tag, recvbuf=recvbuf, source=source, recvtag=tag)


def barrier(comm: MPI.Comm) -> None:
    """Collective: wait for every rank."""
    comm.Barrier()


def abort(comm: MPI.Comm | None = None, code: int = 1) -> None:
    """End the whole job at once (every rank) with exit ``code``."""
    (comm or MPI.COMM_WORLD).Abort(code)


def local_rank(comm: MPI.Comm) -> int:
    """Collective: this rank's index among the ranks on the same node."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def tag_upper_bound(comm: MPI.Comm) -> int:
    """The largest message tag this MPI library accepts."""
    ub = comm.Get_attr(MPI.TAG_UB)
    return int(ub) if ub is not None else 32767


def wtime() -> float:
    """MPI wall-clock time in seconds."""
    return MPI.Wtime()


def library_version() -> str:
    """The first line of the MPI library's version string."""
    return " ".join(MPI.Get_library_version().splitlines()[0].split())


_cuda_aware: bool | None = None
_PROBE_ENV_PREFIXES = ("PMI_", "PMIX_", "HYDI_", "HYDRA_", "MPI_LOCAL", "OMPI_")


def cuda_aware() -> bool:
    """Whether this MPI library sends GPU buffers directly; probed once per process.

    The probe is a real send of a device buffer (MPI_Sendrecv to self), run in a child
    process with a single-process MPI, because a library without GPU support may crash on
    one. ``COTS_MPI_CUDA_AWARE=0`` or ``1`` skips the probe and states the answer.
    """
    global _cuda_aware
    if _cuda_aware is None:
        stated = os.environ.get("COTS_MPI_CUDA_AWARE")
        if stated in ("0", "1"):
            _cuda_aware = stated == "1"
        elif not backend.gpu_available():
            _cuda_aware = False
        else:
            _cuda_aware = _run_probe()
    return _cuda_aware


def _run_probe() -> bool:
    """Run the device-buffer send in a child process; True when it arrived intact."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROBE_ENV_PREFIXES)}
    code = "from distarray.comm import _probe_child; _probe_child()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip().endswith("cuda-aware: yes")


def _probe_child() -> None:
    """Child side of the probe: send a device buffer to self and check it arrived."""
    xp = backend.namespace("cupy")
    send = xp.arange(4096, dtype=xp.float32)  # (4096,)
    recv = xp.zeros_like(send)
    backend.synchronize()
    MPI.COMM_SELF.Sendrecv(send, dest=0, sendtag=7, recvbuf=recv, source=0, recvtag=7)
    backend.synchronize()
    print("cuda-aware: yes" if bool((recv == send).all()) else "cuda-aware: no")
