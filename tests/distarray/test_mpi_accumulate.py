"""MPI tests of accumulate (the adjoint of fetch) against a serial NumPy oracle.

Run at any size (1-4 ranks): ``mpiexec -n 3 python -m mpi4py -m pytest --with-mpi -m mpi tests``.
Rank ``r``'s box and values come from an rng seeded with ``(seed, r)``, so every rank can
replay every other rank's contribution and sum them all into a padded global oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import distarray as da

from .mpi_helpers import (
    BOX_KINDS,
    DTYPES,
    SEED,
    explicit_blocks,
    global_array,
    grid,
    owned_box,
    padded_add,
    padded_fetch,
    random_box,
    rank,
    rank_rng,
    size,
    some_layouts,
    world,
)

pytestmark = pytest.mark.mpi

SHAPES = {1: (13,), 2: (11, 7), 3: (7, 5, 11)}


def cases(ndim: int, seed: int, count: int):
    """(dims, split, blocks): sampled layouts, balanced then random explicit blocks."""
    rng = np.random.default_rng([SEED, seed, ndim])  # the same on every rank
    for dims, split in some_layouts(size(), ndim, count, seed):
        yield dims, split, None
        yield dims, split, explicit_blocks(rng, SHAPES[ndim], dims, split)


def contribution(shape, dtype, seed: int, r: int, kind: str | None = None):
    """Rank ``r``'s (lo, hi, values), replayable on any rank."""
    rng = rank_rng(seed, r)
    kind = kind or BOX_KINDS[int(rng.integers(len(BOX_KINDS)))]
    lo, hi = random_box(rng, shape, kind)
    box_shape = tuple(b - a for a, b in zip(lo, hi))
    if np.issubdtype(dtype, np.integer):
        values = rng.integers(-50, 50, size=box_shape).astype(dtype)
    else:
        values = rng.standard_normal(box_shape).astype(dtype)
    return lo, hi, values


def oracle(initial: np.ndarray, seed: int, kind: str | None = None, times: int = 1) -> np.ndarray:
    """``initial`` plus every rank's contribution, added in rank order, ``times`` over."""
    total = initial.copy()
    for _ in range(times):
        for r in range(size()):
            lo, hi, values = contribution(initial.shape, initial.dtype, seed, r, kind)
            padded_add(total, lo, hi, values)
    return total


def check_close(got: np.ndarray, want: np.ndarray) -> None:
    if np.issubdtype(want.dtype, np.integer):
        np.testing.assert_array_equal(got, want)
    else:
        rtol = 1e-12 if want.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_accumulate_random_boxes(ndim, dtype):
    """Every box kind (inside, spanning all owners, partly and wholly outside, empty)."""
    shape = SHAPES[ndim]
    g = np.zeros(shape, dtype=dtype)
    for i, (dims, split, blocks) in enumerate(cases(ndim, 1, 6 if ndim < 3 else 4)):
        for j in (2 * i, 2 * i + 1):  # two kinds per layout, every kind over the layouts
            kind = BOX_KINDS[j % len(BOX_KINDS)]
            seed = SEED + 1000 * i + j
            x = da.zeros(shape, grid(dims), split=split, dtype=dtype, blocks=blocks)
            lo, hi, values = contribution(shape, dtype, seed, rank(), kind)
            x.accumulate(list(zip(lo, hi)), values)
            want = oracle(g, seed, kind)
            check_close(x.local, want[x.box.slices()])
            check_close(x.allgather(), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate_adds_into_existing_contents(dtype):
    shape = SHAPES[2]
    initial = global_array(shape, dtype, SEED)
    for i, (dims, split, blocks) in enumerate(cases(2, 2, 5)):
        seed = SEED + 7 * i
        x = da.from_global(initial.copy(), grid(dims), split=split, blocks=blocks)
        lo, hi, values = contribution(shape, dtype, seed, rank())
        plan = x.accumulate_plan(da.Box(lo, hi))
        plan(x, values)
        check_close(x.allgather(), oracle(initial, seed))
        plan(x, values)  # the same plan again: adds a second time
        check_close(x.allgather(), oracle(initial, seed, times=2))


def test_accumulate_is_deterministic_and_rank_ordered():
    """Twice from the same start gives bit-identical blocks; and (as documented) contributions
    are added in ascending rank order, so the result equals the rank-ordered oracle exactly."""
    shape = SHAPES[3]
    initial = global_array(shape, np.float64, SEED + 3)
    for i, (dims, split, blocks) in enumerate(cases(3, 3, 4)):
        seed = SEED + 11 * i
        lo, hi, values = contribution(shape, np.float64, seed, rank(), "span")
        runs = []
        for _ in range(2):
            x = da.from_global(initial.copy(), grid(dims), split=split, blocks=blocks)
            x.accumulate(da.Box(lo, hi), values)
            runs.append(x.local.copy())
        np.testing.assert_array_equal(runs[0], runs[1])
        want = oracle(initial, seed, "span")
        np.testing.assert_array_equal(runs[0], want[x.box.slices()])


def adjoint_sides(x: da.DistArray, g: np.ndarray, lo, hi, v: np.ndarray) -> tuple[float, float, float]:
    """(<fetch(x), v> over ranks, <x, accumulate(v)>, the scale sum |fetch(x)| |v|)."""
    fetched = x.fetch(list(zip(lo, hi)))
    np.testing.assert_array_equal(fetched, padded_fetch(g, lo, hi))
    parts = world().allgather((float(np.sum(fetched * v)), float(np.sum(np.abs(fetched * v)))))
    lhs = math.fsum(p[0] for p in parts)
    scale = math.fsum(p[1] for p in parts)
    y = da.zeros_like(x)
    y.accumulate(da.Box(lo, hi), v)
    return lhs, x.dot(y), scale


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_adjoint_identity(ndim):
    """<fetch(x), v> summed over ranks equals <x, accumulate(v)>, float64, rel 1e-12."""
    shape = SHAPES[ndim]
    for i, (dims, split, blocks) in enumerate(cases(ndim, 4, 6 if ndim < 3 else 4)):
        g = global_array(shape, np.float64, SEED + 50 + i)
        x = da.from_global(g.copy(), grid(dims), split=split, blocks=blocks)
        for j in range(3):
            lo, hi, v = contribution(shape, np.float64, SEED + 100 * i + j, rank())
            lhs, rhs, scale = adjoint_sides(x, g, lo, hi, v)
            assert abs(lhs - rhs) <= 1e-12 * max(scale, 1e-300), (lhs, rhs, lo, hi)


def test_adjoint_identity_big_boxes():
    """Every rank's box covers most of the array: many owners per box, many overlaps."""
    shape = SHAPES[2]
    for i, (dims, split, blocks) in enumerate(cases(2, 5, 4)):
        g = global_array(shape, np.float64, SEED + 60 + i)
        x = da.from_global(g.copy(), grid(dims), split=split, blocks=blocks)
        lo, hi, v = contribution(shape, np.float64, SEED + 200 + i, rank(), "span")
        lhs, rhs, scale = adjoint_sides(x, g, lo, hi, v)
        assert scale > 0
        assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)


def test_begin_end_with_work_between():
    """begin/end with local work between; two plans in flight at once, ended in reverse."""
    shape = SHAPES[2]
    initial = global_array(shape, np.float64, SEED + 4)
    for i, (dims, split, blocks) in enumerate(cases(2, 6, 5)):
        s1, s2 = SEED + 300 + i, SEED + 400 + i
        x = da.from_global(initial.copy(), grid(dims), split=split, blocks=blocks)
        y = da.zeros_like(x)
        lo1, hi1, v1 = contribution(shape, np.float64, s1, rank())
        lo2, hi2, v2 = contribution(shape, np.float64, s2, rank())
        p1 = x.accumulate_plan(list(zip(lo1, hi1)))
        p2 = x.accumulate_plan(tuple(slice(a, b) for a, b in zip(lo2, hi2)))
        p1.begin(x, v1)
        p2.begin(y, v2)
        interior = float(np.sum(v1)) + float(np.sum(v2))  # overlapped compute
        p2.end()
        p1.end()
        assert math.isfinite(interior)
        check_close(x.allgather(), oracle(initial, s1))
        check_close(y.allgather(), oracle(np.zeros(shape), s2))


def test_plan_reuse_over_steps_new_values():
    """One plan, new values every step, into fresh and into accumulating arrays."""
    shape = SHAPES[3]
    for i, (dims, split, blocks) in enumerate(cases(3, 7, 3)):
        lo, hi, _ = contribution(shape, np.float64, SEED + 500 + i, rank())
        total = da.zeros(shape, grid(dims), split=split, dtype=np.float64, blocks=blocks)
        plan = total.accumulate_plan(da.Box(lo, hi))
        want_total = np.zeros(shape)
        for step in range(3):
            values = [rank_rng(SEED + step, r).standard_normal(1) for r in range(size())]
            mine = np.full(tuple(b - a for a, b in zip(lo, hi)), values[rank()][0])
            fresh = da.zeros_like(total)
            plan.begin(fresh, mine)
            plan.end()
            plan(total, mine)
            want = np.zeros(shape)
            for r in range(size()):
                rlo, rhi, _ = contribution(shape, np.float64, SEED + 500 + i, r)
                part = np.full(tuple(b - a for a, b in zip(rlo, rhi)), values[r][0])
                padded_add(want, rlo, rhi, part)
                padded_add(want_total, rlo, rhi, part)
            check_close(fresh.allgather(), want)
            check_close(total.allgather(), want_total)


def test_fetch_then_accumulate_round_trip_of_partition():
    """Fetching each rank's own block and accumulating it into zeros rebuilds the array; with
    overlapping halo boxes each element is counted once per box covering it."""
    shape = SHAPES[2]
    g = global_array(shape, np.float64, SEED + 5)
    for dims, split, blocks in cases(2, 8, 4):
        x = da.from_global(g.copy(), grid(dims), split=split, blocks=blocks)
        y = da.zeros_like(x)
        y.accumulate(x.box, x.fetch(x.box))
        np.testing.assert_array_equal(y.allgather(), g)
        plan = x.halo_plan(1)
        z = da.zeros_like(x)
        z.accumulate(plan.box, plan(x))
        cover = np.zeros(shape)
        widths = [(1, 1) if s is not None else (0, 0) for s in split]
        for r in range(size()):
            box = owned_box(shape, dims, split, r, blocks).expand(widths)
            padded_add(cover, box.lo, box.hi, np.ones(box.shape))
        check_close(z.allgather(), g * cover)
