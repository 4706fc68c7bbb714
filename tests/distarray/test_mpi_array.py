"""MPI tests of DistArray constructors, gather/allgather, redistribute, reductions and copies.

Run at any size (1-4 ranks): ``mpiexec -n 3 python -m mpi4py -m pytest --with-mpi -m mpi tests``.
Every result is compared with a NumPy array built the same way on every rank.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import distarray as da

from .mpi_helpers import (
    DTYPES,
    SEED,
    explicit_blocks,
    global_array,
    grid,
    layouts,
    owned_box,
    rank,
    size,
    some_layouts,
    world,
)

pytestmark = pytest.mark.mpi

SHAPE = (11, 7)
SHAPE3 = (7, 5, 11)


def cases(shape, seed: int, count: int):
    """(dims, split, blocks): sampled layouts, balanced then random explicit blocks."""
    rng = np.random.default_rng([SEED, seed, len(shape)])
    for dims, split in some_layouts(size(), len(shape), count, seed):
        yield dims, split, None
        yield dims, split, explicit_blocks(rng, shape, dims, split)


def check_block(x: da.DistArray, g: np.ndarray, dims, split, blocks) -> None:
    """``x`` holds the oracle's block of ``g`` for this layout."""
    box = owned_box(g.shape, dims, split, rank(), blocks)
    assert x.box == box and x.shape == g.shape and x.dtype == g.dtype
    assert x.local.flags.c_contiguous
    np.testing.assert_array_equal(x.local, g[box.slices()])


# -- constructors --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_zeros_full(dtype):
    for dims, split, blocks in cases(SHAPE, 1, 6):
        box = owned_box(SHAPE, dims, split, rank(), blocks)
        e = da.empty(SHAPE, grid(dims), split=split, dtype=dtype, blocks=blocks)
        assert e.local.shape == box.shape and e.local.dtype == dtype and e.box == box
        assert e.layout.split == split and e.grid.dims == dims and e.backend == "numpy"
        assert sum(world().allgather(e.local.size)) == math.prod(SHAPE)
        check_block(da.zeros(SHAPE, grid(dims), split=split, dtype=dtype, blocks=blocks),
                    np.zeros(SHAPE, dtype), dims, split, blocks)
        check_block(da.full(SHAPE, grid(dims), 7, split=split, dtype=dtype, blocks=blocks),
                    np.full(SHAPE, 7, dtype), dims, split, blocks)


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_global(dtype):
    for dims, split, blocks in cases(SHAPE3, 2, 6):
        g = global_array(SHAPE3, dtype, SEED)
        x = da.from_global(g, grid(dims), split=split, blocks=blocks)
        check_block(x, g, dims, split, blocks)
        np.testing.assert_array_equal(x.allgather(), g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_from_every_root(dtype):
    g = global_array(SHAPE, dtype, SEED + 1)
    for root in range(size()):
        for dims, split, blocks in cases(SHAPE, 3 + root, 3):
            x = da.scatter(g.copy() if rank() == root else None, grid(dims), root=root,
                           split=split, blocks=blocks)
            check_block(x, g, dims, split, blocks)
            assert x.layout == da.Layout.create(SHAPE, dims, split, dtype, blocks)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [SHAPE, SHAPE3], ids=["2d", "3d"])
def test_random_equals_random_global_for_every_grid(shape, dtype):
    """uniform/normal hold, bit for bit, the blocks of random_global, whatever the layout; so
    the global array is the same on every layout and every number of ranks."""
    want = {
        "uniform": da.random_global(shape, 5, "uniform", -2.0, 3.0, dtype),
        "normal": da.random_global(shape, 6, "normal", 1.0, 0.5, dtype),
    }
    every = layouts(size(), len(shape)) if len(shape) == 2 else some_layouts(size(), 3, 24, 7)
    rng = np.random.default_rng([SEED, 8])
    for i, (dims, split) in enumerate(every):
        blocks = explicit_blocks(rng, shape, dims, split) if i % 2 else None
        u = da.uniform(shape, grid(dims), 5, -2.0, 3.0, split=split, dtype=dtype, blocks=blocks)
        n = da.normal(shape, grid(dims), 6, 1.0, 0.5, split=split, dtype=dtype, blocks=blocks)
        check_block(u, want["uniform"], dims, split, blocks)
        check_block(n, want["normal"], dims, split, blocks)
        if i < 4:
            assert np.array_equal(u.allgather(), want["uniform"])
            whole = n.gather(root=size() - 1)
            assert whole is None if rank() != size() - 1 else np.array_equal(whole, want["normal"])
    assert ((want["uniform"] >= -2.0) & (want["uniform"] < 3.0)).all()
    assert np.isfinite(want["normal"]).all() and want["normal"].std() > 0.2


# -- whole-array views ---------------------------------------------------------------------
def test_gather_every_root_and_allgather():
    for dims, split, blocks in cases(SHAPE3, 9, 4):
        g = global_array(SHAPE3, np.float64, SEED + 2)
        x = da.from_global(g.copy(), grid(dims), split=split, blocks=blocks)
        for root in range(size()):
            got = x.gather(root)
            if rank() == root:
                np.testing.assert_array_equal(got, g)
            else:
                assert got is None
        np.testing.assert_array_equal(x.allgather(), g)
        check_block(x, g, dims, split, blocks)  # gather leaves the blocks alone


def redistribution_layouts(dtype) -> list[da.Layout]:
    """1-D splits of either axis, 2-D grids, explicit uneven blocks (with empty blocks)."""
    n = size()
    two = da.factor_grid(n, SHAPE)
    rng = np.random.default_rng([SEED, 10])  # the same on every rank
    specs = [
        ((n,), (0, None), None),
        ((n,), (None, 0), None),
        (two, (0, 1), None),
        (two[::-1], (1, 0), None),
        ((1, n, 1), (2, 1), None),
        ((n,), (0, None), explicit_blocks(rng, SHAPE, (n,), (0, None))),
        (two, (0, 1), explicit_blocks(rng, SHAPE, two, (0, 1))),
        ((n,), (None, 0), [None, (0,) * (n - 1) + (7,)]),  # the last rank owns everything
    ]
    return [da.Layout.create(SHAPE, dims, split, dtype, blocks) for dims, split, blocks in specs]


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_redistribute_between_every_pair(dtype):
    g = global_array(SHAPE, dtype, SEED + 3)
    targets = redistribution_layouts(dtype)
    for a in targets:
        x = da.from_global(g.copy(), grid(a.grid_shape), split=a.split, blocks=a.blocks)
        for b in targets:
            y = x.redistribute(b, grid(b.grid_shape))
            assert y.layout == b and y.grid is grid(b.grid_shape)
            check_block(y, g, b.grid_shape, b.split, b.blocks)
            assert not np.shares_memory(y.local, x.local)
        check_block(x, g, a.grid_shape, a.split, a.blocks)  # the source is untouched
    y = x.redistribute(targets[0], grid(targets[0].grid_shape)).redistribute(x.layout, x.grid)
    np.testing.assert_array_equal(y.local, x.local)


# -- reductions ----------------------------------------------------------------------------
def close(got: float, want: float, scale: float) -> bool:
    return abs(got - want) <= 1e-12 * max(scale, 1e-300)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_match_numpy_and_agree_across_ranks(dtype):
    g = global_array(SHAPE3, dtype, SEED + 4)
    h = global_array(SHAPE3, dtype, SEED + 5)
    g64, h64 = g.astype(np.float64), h.astype(np.float64)
    for dims, split, blocks in cases(SHAPE3, 11, 5):
        x = da.from_global(g.copy(), grid(dims), split=split, blocks=blocks)
        y = da.from_global(h.copy(), grid(dims), split=split, blocks=blocks)
        got = {"sum": x.sum(), "max": x.max(), "min": x.min(), "norm": x.norm(), "dot": x.dot(y)}
        seen = world().allgather(got)
        assert all(s == seen[0] for s in seen), seen  # identical on every rank
        assert close(got["sum"], g64.sum(), np.abs(g64).sum())
        assert close(got["norm"], math.sqrt((g64 ** 2).sum()), math.sqrt((g64 ** 2).sum()))
        assert close(got["dot"], (g64 * h64).sum(), np.abs(g64 * h64).sum())
        assert got["max"] == g.max() and got["min"] == g.min()
        if np.issubdtype(dtype, np.integer):
            assert got["sum"] == int(g64.sum())
        assert da.zeros_like(x).sum() == 0 and da.zeros_like(x).norm() == 0


def test_reductions_identical_across_layouts_for_max_min():
    """max and min are exact: the same value on every layout."""
    g = global_array(SHAPE, np.float32, SEED + 6)
    results = set()
    for dims, split, blocks in cases(SHAPE, 12, 6):
        x = da.from_global(g.copy(), grid(dims), split=split, blocks=blocks)
        results.add((x.max(), x.min()))
    assert results == {(float(g.max()), float(g.min()))}


# -- copies --------------------------------------------------------------------------------
def test_copy_zeros_like_empty_like():
    g = global_array(SHAPE, np.float32, SEED + 7)
    for dims, split, blocks in cases(SHAPE, 13, 4):
        x = da.from_global(g.copy(), grid(dims), split=split, blocks=blocks)
        for y in (x.copy(), da.zeros_like(x), da.empty_like(x)):
            assert y.layout == x.layout and y.grid is x.grid and y.backend == x.backend
            assert y.local.shape == x.local.shape and y.local.dtype == x.local.dtype
            assert not np.shares_memory(y.local, x.local)
        c, z = x.copy(), da.zeros_like(x)
        np.testing.assert_array_equal(c.local, x.local)
        np.testing.assert_array_equal(z.allgather(), np.zeros_like(g))
        c.local += 1  # the copy is independent of the original
        np.testing.assert_array_equal(x.allgather(), g)
        np.testing.assert_array_equal(c.allgather(), g + np.float32(1))


def test_from_global_does_not_alias_its_input():
    """Writing into the DistArray must not write into the caller's global array, whatever the
    layout (a block that happens to be contiguous must not be a view of the input)."""
    for dims, split, blocks in cases(SHAPE, 14, 6):
        g = global_array(SHAPE, np.float64, SEED + 8)
        kept = g.copy()
        x = da.from_global(g, grid(dims), split=split, blocks=blocks)
        x.local[...] = -1.0
        assert not np.shares_memory(x.local, g), (dims, split, blocks)
        np.testing.assert_array_equal(g, kept)
