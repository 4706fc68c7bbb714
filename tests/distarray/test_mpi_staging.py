"""The host-staging path (GPU buffers with an MPI that is not CUDA-aware), forced on NumPy.

On a machine without a GPU the staged path would never run; forcing it on host arrays runs
the same code (host message buffers, pack, unpack, add) against the serial oracle.
"""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import comm
from distarray.exchange import _Plan

pytestmark = pytest.mark.mpi


@pytest.fixture
def staged(monkeypatch):
    monkeypatch.setattr(_Plan, "_staged", lambda self, array: True)


def _padded_oracle(global_array: np.ndarray, box: da.Box) -> np.ndarray:
    pad = max(max(-min(box.lo), 0), max(h - s for h, s in zip(box.hi, global_array.shape)), 0)
    padded = np.pad(global_array, pad)
    return padded[box.slices(tuple(-pad for _ in box.lo))]


@pytest.mark.parametrize("split", [(0, None, None), (None, 0, None)])
def test_staged_fetch_and_accumulate_match_oracle(staged, split):
    world = comm.world()
    grid = da.ProcessGrid()
    shape = (7 + world.Get_size(), 9, 3)
    x = da.uniform(shape, grid, seed=11, split=split, dtype=np.float64)
    oracle = da.random_global(shape, 11, dtype=np.float64)
    rng = np.random.default_rng(100 + grid.rank)
    lo = rng.integers(-3, 6, 3)
    box = da.Box(tuple(int(v) for v in lo), tuple(int(v) for v in lo + rng.integers(1, 9, 3)))
    plan = x.fetch_plan(box)
    for _ in range(2):  # reuse: buffers allocated once, refilled
        got = plan(x)
        np.testing.assert_array_equal(got, _padded_oracle(oracle, box))

    values = rng.standard_normal(box.shape)
    y = da.zeros(shape, grid, split=split, dtype=np.float64)
    y.accumulate(box, values)
    boxes = comm.allgather(grid.comm, box)
    vals = comm.allgather(grid.comm, values)
    expect = np.zeros(shape)
    for b, v in zip(boxes, vals):
        inside = b.intersect(da.Box((0, 0, 0), shape))
        if inside is not None:
            expect[inside.slices()] += v[inside.slices(b.lo)]
    np.testing.assert_allclose(y.local, expect[y.box.slices()], rtol=0, atol=1e-12)
