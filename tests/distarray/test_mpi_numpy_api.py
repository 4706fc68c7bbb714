"""MPI tests of NumPy on DistArrays (distarray.numpy_api) at 1-4 ranks, against NumPy on
the global arrays: ufuncs, operators and in-place forms bit for bit on every layout;
reductions through NumPy's functions identical on every rank; unit-step slices; and one
clear TypeError or ValueError, on every rank alike, for what would need a gather."""

from __future__ import annotations

import math

import numpy as np
import pytest

import distarray as da

from .mpi_helpers import SEED, explicit_blocks, global_array, grid, owned_box, rank, size, some_layouts, world

pytestmark = pytest.mark.mpi

SHAPE = (7, 5, 6)


def cases(seed: int, count: int = 4):
    rng = np.random.default_rng([SEED, seed])
    for dims, split in some_layouts(size(), len(SHAPE), count, seed):
        yield dims, split, None
        yield dims, split, explicit_blocks(rng, SHAPE, dims, split)


def assert_block(x: da.DistArray, g: np.ndarray) -> None:
    """``x`` is a DistArray holding this rank's block of ``g``, bit for bit."""
    assert isinstance(x, da.DistArray) and x.shape == g.shape and x.dtype == g.dtype, (x, g.dtype)
    assert x.local.flags.c_contiguous
    assert x.local.tobytes() == g[x.box.slices()].tobytes()


def pair(dims, split, blocks, dtype=np.float32, seed=1):
    g = global_array(SHAPE, dtype, SEED + seed)
    h = global_array(SHAPE, dtype, SEED + seed + 1)
    return (da.from_global(g, grid(dims), split=split, blocks=blocks),
            da.from_global(h, grid(dims), split=split, blocks=blocks), g, h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ufuncs_and_operators_match_numpy_bit_for_bit(dtype):
    for dims, split, blocks in cases(1):
        x, y, g, h = pair(dims, split, blocks, dtype)
        assert_block(x + y, g + h)
        assert_block(x * 2, g * 2)
        assert_block(2.5 - x, 2.5 - g)
        assert_block(x / (abs(y) + 1), g / (np.abs(h) + 1))
        assert_block(-x ** 2, -g ** 2)
        assert_block(np.exp(x), np.exp(g))
        assert_block(np.maximum(x, 0), np.maximum(g, 0))
        assert_block(x > y, g > h)
        assert_block(x + np.float64(0), g + np.float64(0))
        assert_block(np.where(x > 0, x, y), np.where(g > 0, g, h))
        assert_block(np.isclose(x, y), np.isclose(g, h))
        assert_block(np.zeros_like(x), np.zeros_like(g))
        assert_block(np.full_like(x, 3, dtype=np.int32), np.full_like(g, 3, dtype=np.int32))


def test_in_place_forms_and_out_write_into_the_operand():
    for dims, split, blocks in cases(2):
        x, y, g, h = pair(dims, split, blocks)
        local = x.local
        x += y
        x *= 0.5
        np.negative(x, out=x)
        assert x.local is local
        assert_block(x, -((g + h) * np.float32(0.5)))
        z = np.empty_like(x)
        got = np.add(x, 1, out=z)
        assert got is z
        assert_block(z, -((g + h) * np.float32(0.5)) + 1)


def test_reductions_through_numpy_agree_on_every_rank():
    for dims, split, blocks in cases(3):
        x, y, g, h = pair(dims, split, blocks, np.float64)
        got = {"sum": np.sum(x), "mean": np.mean(x), "max": np.max(x), "amin": np.amin(x),
               "norm": np.linalg.norm(x), "vdot": np.vdot(x, y), "reduce": np.add.reduce(x, axis=None),
               "all": np.all(x > -10), "any": np.any(x > 10), "count": np.count_nonzero(x > 0),
               "allclose": np.allclose(x, x + 1e-12), "equal": np.array_equal(x, x.copy()),
               "unequal": np.array_equal(x, x + 1), "size": np.size(x), "shape": np.shape(x)}
        seen = world().allgather(got)
        assert all(s == seen[0] for s in seen), seen
        assert math.isclose(got["sum"], g.sum(), rel_tol=1e-12)
        assert math.isclose(got["mean"], g.mean(), rel_tol=1e-12)
        assert got["max"] == g.max() and got["amin"] == g.min() and got["reduce"] == got["sum"]
        assert math.isclose(got["norm"], np.linalg.norm(g), rel_tol=1e-12)
        assert math.isclose(got["vdot"], np.vdot(g, h), rel_tol=1e-12)
        assert got["all"] and not got["any"] and got["count"] == np.count_nonzero(g > 0)
        assert got["allclose"] and got["equal"] and not got["unequal"]
        assert got["size"] == g.size and got["shape"] == g.shape


def test_slices_cut_the_blocks_without_messages():
    for dims, split, blocks in cases(4):
        x, _, g, _ = pair(dims, split, blocks)
        for key in [(slice(1, 6), slice(None), slice(2, 5)), (Ellipsis, slice(0, 1)), (slice(3, 3),),
                    (slice(-4, None), slice(1, -1))]:
            s = x[key]
            assert_block(s, g[key])
            assert s.grid is x.grid and s.layout.split == x.layout.split
            assert s.box == owned_box(g[key].shape, dims, split, rank(), s.layout.blocks)
        s = x[1:6]
        s.local[...] = 0  # a copy, not a view
        assert_block(x, g)


def test_what_would_gather_raises_one_clear_error_everywhere():
    dims, split, blocks = next(cases(5))
    x, y, g, _ = pair(dims, split, blocks)
    other = da.from_global(g, grid((size(),)), split=(None, None, 0)) if size() > 1 else da.from_global(g[:, :, :5], grid((1,)))
    for action, kind, words in [
            (lambda: np.asarray(x), TypeError, "would gather it"),
            (lambda: np.sum(x, axis=0), TypeError, "reduces the whole array only"),
            (lambda: np.add.reduce(x), TypeError, "axis=None"),
            (lambda: np.cumsum(x), TypeError, "numpy.cumsum is not supported"),
            (lambda: np.matmul(x, y), TypeError, "numpy.matmul"),
            (lambda: x + g, TypeError, "expected DistArrays of one layout or scalars, got ndarray"),
            (lambda: x[3], TypeError, "slices of step 1 only"),
            (lambda: x[::2], TypeError, "slices of step 1 only"),
            (lambda: bool(x > 0), TypeError, "ambiguous"),
            (lambda: list(x), TypeError, "iterating"),
            (lambda: x + other, ValueError, "needs DistArrays of one layout")]:
        with pytest.raises(kind, match=words):
            action()
    assert "holds [" in repr(x) and f"rank {rank()} of {size()}" in repr(x)
