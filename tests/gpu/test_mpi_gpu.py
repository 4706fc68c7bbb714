"""The CuPy path at 1-4 ranks (several ranks may share one GPU) against the NumPy path on the
same data: halos and accumulates of DistArrays in GPU memory, the locally connected layer,
and a few training steps of a small network."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import backend
from distarray import comm as _comm
from layers import LocallyConnected2D
from models.config import parse_config
from models.training.trainer import Trainer

from ..distarray.mpi_helpers import SEED, grid, size
from .gpu_helpers import needs_gpu, rel_err

pytestmark = [pytest.mark.mpi, pytest.mark.gpu, needs_gpu]

GRIDS = [g for g in [(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 2), (1, 4), (4, 1)] if g[0] * g[1] == size()]


@pytest.fixture(scope="module", autouse=True)
def one_gpu_per_rank():
    """Each rank of a node on its own GPU, or all on the one there is."""
    da.use_local_gpu()


def data(shape, seed) -> np.ndarray:
    return da.random_global(shape, seed, "normal", 0.0, 1.0, np.float32)


@pytest.mark.parametrize("dims", GRIDS)
def test_halo_and_accumulate_in_gpu_memory(dims):
    g = grid(dims + (1,))
    whole = data((13, 11, 2), SEED)
    host = da.from_global(whole, g, backend_name="numpy")
    dev = da.from_global(whole, g, backend_name="cupy")
    assert dev.backend == "cupy"
    np.testing.assert_array_equal(backend.to_host(dev.halo(2)), host.halo(2))
    np.testing.assert_array_equal(backend.to_host(dev.allgather()), whole)


@pytest.mark.parametrize("dims", GRIDS)
def test_locally_connected_layer_on_gpus(dims):
    H, W, C, B, k, M = 14, 13, 3, 4, 5, 4
    gpu = LocallyConnected2D((H, W, C), M, k, grid(dims), seed=SEED, backend_name="cupy")
    cpu = LocallyConnected2D((H, W, C), M, k, grid(dims), seed=SEED)
    x, dy = data((H, W, C, B), SEED + 1), data(cpu.out_shape + (B,), SEED + 2)
    y = gpu.forward(da.from_global(x, gpu.grid, backend_name="cupy"))
    ys = cpu.forward(da.from_global(x, cpu.grid, backend_name="numpy"))
    assert rel_err(y.allgather(), ys.allgather()) < 1e-5
    dx = gpu.backward(da.from_global(dy, gpu.grid, backend_name="cupy"))
    dxs = cpu.backward(da.from_global(dy, cpu.grid, backend_name="numpy"))
    assert rel_err(dx.allgather(), dxs.allgather()) < 1e-5
    assert rel_err(gpu.grad_weight.allgather(), cpu.grad_weight.allgather()) < 1e-5


def test_training_on_gpus_follows_numpy():
    def config(backend_name):
        return parse_config({
            "model": {"input": [16, 16, 1], "seed": 4, "dtype": "float32", "stages": [
                {"k": 4, "maps": 4, "pool": 2, "lcn": 3, "eps": 1e-3}]},
            "train": {"mode": "greedy", "steps": 4, "batch": 8, "optimizer": "sgd", "lr": 0.01},
            "data": {"source": "bundled", "face_share": 0.25},
            "run": {"backend": backend_name}})
    got = Trainer(config("cupy")).run()
    want = Trainer(config("numpy")).run()
    for a, b in zip(got, want):
        for stage in a["stages"]:
            assert abs(a["stages"][stage]["reconstruction"] - b["stages"][stage]["reconstruction"]) <= \
                1e-4 * abs(b["stages"][stage]["reconstruction"])
    _comm.barrier(_comm.world())
