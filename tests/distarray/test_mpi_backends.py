"""Every core operation on every available backend (NumPy; CuPy where a GPU is visible).

Compared with NumPy oracles after copying to the host. On a machine without a GPU only the
NumPy case runs; on one with a GPU the same tests exercise the device path (packing on the
device, and host staging or direct device buffers as the CUDA-aware probe decides).
"""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import backend, comm

pytestmark = [pytest.mark.mpi, pytest.mark.parametrize("name", da.available_backends())]

SHAPE = (9, 7, 3)


def _grid() -> da.ProcessGrid:
    return da.ProcessGrid.for_shape(SHAPE[:2])


def _box_for(rank: int) -> da.Box:
    rng = np.random.default_rng(1000 + rank)
    lo = rng.integers(-3, 7, 3)
    return da.Box(tuple(int(v) for v in lo), tuple(int(v) for v in lo + rng.integers(1, 8, 3)))


def _padded(whole: np.ndarray, box: da.Box) -> np.ndarray:
    out = np.zeros(box.shape, whole.dtype)
    inside = box.intersect(da.Box((0,) * whole.ndim, whole.shape))
    if inside is not None:
        out[inside.slices(box.lo)] = whole[inside.slices()]
    return out


def test_random_constructors_match_the_serial_oracle(name):
    grid = _grid()
    x = da.uniform(SHAPE, grid, seed=5, backend_name=name)
    n = da.normal(SHAPE, grid, seed=5, backend_name=name, dtype=np.float64)
    assert x.backend == name
    np.testing.assert_array_equal(backend.to_host(x.local), da.random_global(SHAPE, 5)[x.box.slices()])
    np.testing.assert_allclose(backend.to_host(n.local),
                               da.random_global(SHAPE, 5, "normal", dtype=np.float64)[n.box.slices()],
                               rtol=1e-14, atol=1e-14)


def test_fetch_halo_and_plan_reuse(name):
    grid = _grid()
    whole = da.random_global(SHAPE, 6)
    x = da.uniform(SHAPE, grid, seed=6, backend_name=name)
    box = _box_for(grid.rank)
    plan = x.fetch_plan(box)
    for _ in range(2):
        got = plan(x)
        assert backend.backend_name(got) == name
        np.testing.assert_array_equal(backend.to_host(got), _padded(whole, box))
    halo = x.halo((2, 1, 0))
    np.testing.assert_array_equal(backend.to_host(halo), _padded(whole, da.halo_box(x.layout, grid.rank, (2, 1, 0))))


def test_ghost_update_in_place(name):
    grid = _grid()
    whole = da.random_global(SHAPE, 7)
    x = da.uniform(SHAPE, grid, seed=7, backend_name=name)
    plan = x.halo_plan(2)
    out = plan(x)
    for piece in plan.pattern.incoming:
        out[piece.box.slices(plan.box.lo)] = -1
    plan.begin(x, out=out, remote_only=True)
    plan.end()
    np.testing.assert_array_equal(backend.to_host(out), _padded(whole, plan.box))


def test_accumulate_and_adjoint_identity(name):
    grid = _grid()
    xp = backend.namespace(name)
    x = da.uniform(SHAPE, grid, seed=8, dtype=np.float64, backend_name=name)
    box = _box_for(grid.rank)
    v = np.random.default_rng(grid.rank).standard_normal(box.shape)  # (box shape)
    y = da.zeros(SHAPE, grid, dtype=np.float64, backend_name=name)
    y.accumulate(box, xp.asarray(v))
    expect = np.zeros(SHAPE)
    for b, vals in zip(comm.allgather(grid.comm, box), comm.allgather(grid.comm, v)):
        inside = b.intersect(da.Box((0, 0, 0), SHAPE))
        if inside is not None:
            expect[inside.slices()] += vals[inside.slices(b.lo)]
    np.testing.assert_allclose(backend.to_host(y.local), expect[y.box.slices()], rtol=0, atol=1e-12)
    lhs = comm.allreduce(grid.comm, float(np.sum(backend.to_host(x.fetch(box)) * v)))
    assert lhs == pytest.approx(x.dot(y), rel=1e-12)


def test_whole_array_operations_and_reductions(name):
    grid = _grid()
    whole = da.random_global(SHAPE, 9, dtype=np.float64)
    x = da.from_global(backend.namespace(name).asarray(whole), grid)
    assert x.backend == name
    np.testing.assert_array_equal(backend.to_host(x.allgather()), whole)
    gathered = x.gather(root=0)
    if grid.rank == 0:
        np.testing.assert_array_equal(backend.to_host(gathered), whole)
    other = da.Layout.create(SHAPE, (grid.size,), (None, None, 0) if grid.size <= 3 else (None, 0, None),
                             np.float64)
    moved = x.redistribute(other, da.ProcessGrid((grid.size,)))
    np.testing.assert_array_equal(backend.to_host(moved.local), whole[other.box(grid.rank).slices()])
    s = da.scatter(whole if grid.rank == 0 else None, grid, root=0, backend_name=name)
    np.testing.assert_array_equal(backend.to_host(s.local), whole[s.box.slices()])
    assert x.sum() == pytest.approx(whole.sum(), rel=1e-12)
    assert x.max() == whole.max() and x.min() == whole.min()
    assert x.norm() == pytest.approx(np.linalg.norm(whole), rel=1e-12)
