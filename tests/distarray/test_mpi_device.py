"""GPU selection per rank and the local-rank arithmetic behind it."""

from __future__ import annotations

import pytest

import distarray as da
from distarray import comm

pytestmark = pytest.mark.mpi


def test_local_rank_counts_ranks_on_this_node():
    world = comm.world()
    nodes = comm.allgather(world, __import__("platform").node())
    local = comm.local_rank(world)
    expected = nodes[: world.Get_rank()].count(nodes[world.Get_rank()])
    assert local == expected


@pytest.mark.skipif(da.gpu_available(), reason="checks the error where no GPU is visible")
def test_use_local_gpu_without_a_gpu_raises_on_every_rank():
    with pytest.raises(RuntimeError, match="sees no GPU"):
        da.use_local_gpu()
    comm.barrier(comm.world())


@pytest.mark.skipif(not da.gpu_available(), reason="needs a GPU")
def test_use_local_gpu_spreads_ranks_over_gpus():
    from distarray import backend

    count = backend.namespace("cupy").cuda.runtime.getDeviceCount()
    assert da.use_local_gpu() == comm.local_rank(comm.world()) % count
