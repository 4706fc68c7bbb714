"""MPI tests of fetch, fetch plans and halos against a zero-padded NumPy oracle.

Run at any size (1-4 ranks): ``mpiexec -n 3 python -m mpi4py -m pytest --with-mpi -m mpi tests``.
Every rank builds the same global array; each asks for its own random boxes.
"""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da

from .mpi_helpers import (
    BOX_KINDS,
    DTYPES,
    SEED,
    as_form,
    explicit_blocks,
    global_array,
    grid,
    owned_box,
    padded_fetch,
    random_box,
    rank,
    rank_rng,
    size,
    some_layouts,
)

pytestmark = pytest.mark.mpi

SHAPES = {1: (13,), 2: (11, 7), 3: (7, 5, 11)}  # extents that 2, 3 and 4 do not divide
LAYOUT_COUNT = {1: 6, 2: 10, 3: 6}  # at most this many layouts per test (4 ranks share 2 cores)


def cases(ndim: int, seed: int, count: int | None = None):
    """(dims, split, blocks) over layouts for this size: balanced, then random explicit blocks
    (zero-extent blocks included). Layouts are sampled by ``seed``, the same on every rank."""
    rng = np.random.default_rng([SEED, seed, ndim])  # the same on every rank
    for dims, split in some_layouts(size(), ndim, count or LAYOUT_COUNT[ndim], seed):
        yield dims, split, None
        yield dims, split, explicit_blocks(rng, SHAPES[ndim], dims, split)


def make(g: np.ndarray, dims, split, blocks=None) -> da.DistArray:
    """A DistArray of ``g`` (from a copy: tests below modify blocks in place)."""
    return da.from_global(g.copy(), grid(dims), split=split, blocks=blocks)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_fetch_random_boxes(ndim, dtype):
    shape = SHAPES[ndim]
    g = global_array(shape, dtype, SEED + ndim)
    rng = rank_rng(SEED + ndim, rank())
    for dims, split, blocks in cases(ndim, 1):
        x = make(g, dims, split, blocks)
        assert x.box == owned_box(shape, dims, split, rank(), blocks)
        np.testing.assert_array_equal(x.local, g[x.box.slices()])
        for kind in BOX_KINDS:
            lo, hi = random_box(rng, shape, kind)
            got = x.fetch(as_form(rng, lo, hi))
            assert got.shape == tuple(b - a for a, b in zip(lo, hi)) and got.dtype == dtype
            np.testing.assert_array_equal(got, padded_fetch(g, lo, hi), err_msg=f"{kind} {lo} {hi}")


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_fetch_spans_every_owner(ndim):
    """A box covering the whole array plus padding touches every rank's block."""
    shape = SHAPES[ndim]
    g = global_array(shape, np.float64, SEED)
    for dims, split, blocks in cases(ndim, 2):
        x = make(g, dims, split, blocks)
        lo, hi = (-2,) * ndim, tuple(n + 3 for n in shape)
        plan = x.fetch_plan(da.Box(lo, hi))
        owners = {r for r in range(size()) if not owned_box(shape, dims, split, r, blocks).empty}
        assert {p.peer for p in plan.pattern.incoming} == owners - {rank()}
        np.testing.assert_array_equal(plan(x), padded_fetch(g, lo, hi))


def test_fetch_full_bounds_gives_global():
    shape = SHAPES[2]
    g = global_array(shape, np.float32, SEED)
    for dims, split, blocks in cases(2, 3):
        x = make(g, dims, split, blocks)
        np.testing.assert_array_equal(x.fetch(x.layout.bounds), g)
        np.testing.assert_array_equal(x.allgather(), g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_reuse_over_arrays_and_steps(dtype):
    """One plan, several arrays of its layout, several steps: fresh data every time, and the
    results of earlier calls are not overwritten by later ones."""
    shape = SHAPES[2]
    rng = rank_rng(SEED + 7, rank())
    for dims, split, blocks in cases(2, 4, 5):
        lo, hi = random_box(rng, shape, "random")
        plan = None
        kept = []
        for step in range(3):
            gs = [global_array(shape, dtype, SEED + 100 * step + j) for j in range(2)]
            xs = [make(gk, dims, split, blocks) for gk in gs]
            plan = plan or xs[0].fetch_plan(list(zip(lo, hi)))
            for gk, xk in zip(gs, xs):
                got = plan(xk)
                np.testing.assert_array_equal(got, padded_fetch(gk, lo, hi))
                kept.append((got, padded_fetch(gk, lo, hi)))
        for got, want in kept:
            np.testing.assert_array_equal(got, want)


def test_plan_reuse_in_place_updates():
    """The same array, modified in place between steps (a time loop)."""
    shape = SHAPES[3]
    g = global_array(shape, np.float64, SEED)
    rng = rank_rng(SEED + 8, rank())
    for dims, split, blocks in cases(3, 5, 4):
        x = make(g, dims, split, blocks)
        lo, hi = random_box(rng, shape, "random")
        plan = x.fetch_plan(da.Box(lo, hi))
        current = g.copy()
        for step in range(3):
            x.local *= 2.0
            x.local += step
            current = current * 2.0 + step
            np.testing.assert_array_equal(plan(x), padded_fetch(current, lo, hi))


def test_begin_end_with_work_between():
    """Two plans in flight at once, ended in reverse order, with local work in between."""
    shape = SHAPES[2]
    g = global_array(shape, np.float64, SEED)
    rng = rank_rng(SEED + 9, rank())
    for dims, split, blocks in cases(2, 6, 6):
        x = make(g, dims, split, blocks)
        y = make(-2.0 * g, dims, split, blocks)
        (lo1, hi1), (lo2, hi2) = random_box(rng, shape, "span"), random_box(rng, shape, "random")
        p1, p2 = x.fetch_plan(list(zip(lo1, hi1))), x.fetch_plan(list(zip(lo2, hi2)))
        for _ in range(2):
            p1.begin(x)
            p2.begin(y)
            interior = float(np.sum(x.local * x.local))  # overlapped compute
            got2 = p2.end()
            got1 = p1.end()
            assert interior == pytest.approx(float(np.sum(g[x.box.slices()] ** 2)))
            np.testing.assert_array_equal(got1, padded_fetch(g, lo1, hi1))
            np.testing.assert_array_equal(got2, padded_fetch(-2.0 * g, lo2, hi2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_argument(dtype):
    """``out=`` is filled (padding zeroed, garbage overwritten) and returned as is."""
    shape = SHAPES[3]
    g = global_array(shape, dtype, SEED)
    rng = rank_rng(SEED + 10, rank())
    for dims, split, blocks in cases(3, 7, 4):
        x = make(g, dims, split, blocks)
        for kind in ("partly_outside", "span", "outside"):
            lo, hi = random_box(rng, shape, kind)
            out = np.full(tuple(b - a for a, b in zip(lo, hi)), 77, dtype=dtype)
            plan = x.fetch_plan(list(zip(lo, hi)))
            assert plan(x, out=out) is out
            np.testing.assert_array_equal(out, padded_fetch(g, lo, hi))
            out[...] = 55
            plan.begin(x, out=out)
            assert plan.end() is out
            np.testing.assert_array_equal(out, padded_fetch(g, lo, hi))


def test_ghost_update_remote_only():
    """remote_only=True moves only the other ranks' parts: the owned part and the padding of
    ``out`` are left as the caller (or the first full fetch) wrote them."""
    shape = SHAPES[2]
    g = global_array(shape, np.float64, SEED)
    for dims, split, blocks in cases(2, 8):
        x = make(g, dims, split, blocks)
        plan = x.halo_plan(2)
        halo = plan(x)  # the first fetch writes everything, padding zeros included
        box = plan.box
        mine = x.box.intersect(box)
        new = g.copy()
        for _ in range(3):
            x.local += 1.0  # a time step updates the owned block...
            new += 1.0
            if mine is not None:  # ... and the caller writes it into its halo array
                halo[mine.slices(box.lo)] = x.local[mine.slices(x.box.lo)]
            plan.begin(x, out=halo, remote_only=True)
            assert plan.end() is halo
            np.testing.assert_array_equal(halo, padded_fetch(new, box.lo, box.hi))
        if mine is not None:  # a sentinel in the owned part survives a ghost update
            halo[mine.slices(box.lo)] = -123.0
        plan.begin(x, out=halo, remote_only=True)
        plan.end()
        want = padded_fetch(new, box.lo, box.hi)
        if mine is not None:
            want[mine.slices(box.lo)] = -123.0
        np.testing.assert_array_equal(halo, want)


def halo_oracle(g, dims, split, blocks, pairs):
    """The oracle box (lo, hi) of this rank's block grown by (before, after) per axis."""
    own = owned_box(g.shape, dims, split, rank(), blocks)
    lo = tuple(a - p[0] for a, p in zip(own.lo, pairs))
    hi = tuple(b + p[1] for b, p in zip(own.hi, pairs))
    return lo, hi


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_halo_widths(ndim, dtype):
    """Int, per-axis and (before, after) widths, corners included; widths up to 6 reach past
    neighbours' blocks (of 1-4 elements here) to ranks 2 and more away."""
    shape = SHAPES[ndim]
    g = global_array(shape, dtype, SEED + 20)
    rng = np.random.default_rng([SEED, 21, ndim])  # the same on every rank: widths agree
    for dims, split, blocks in cases(ndim, 9):
        x = make(g, dims, split, blocks)
        for w in (0, 1, 2, 6):
            pairs = [(w, w) if s is not None else (0, 0) for s in split]
            lo, hi = halo_oracle(g, dims, split, blocks, pairs)
            np.testing.assert_array_equal(x.halo(w), padded_fetch(g, lo, hi), err_msg=f"w={w}")
        per_axis = [int(v) for v in rng.integers(0, 6, size=ndim)]
        lo, hi = halo_oracle(g, dims, split, blocks, [(v, v) for v in per_axis])
        np.testing.assert_array_equal(x.halo(per_axis), padded_fetch(g, lo, hi))
        pairs = [tuple(int(v) for v in rng.integers(0, 7, size=2)) for _ in range(ndim)]
        mixed = [p if k % 2 == 0 else p[0] for k, p in enumerate(pairs)]
        pairs = [p if k % 2 == 0 else (p[0], p[0]) for k, p in enumerate(pairs)]
        lo, hi = halo_oracle(g, dims, split, blocks, pairs)
        np.testing.assert_array_equal(x.halo(mixed), padded_fetch(g, lo, hi), err_msg=f"{mixed}")


def test_halo_reaches_two_ranks_away():
    """A 1-D split of 13 over every rank with width 6: the halo covers blocks 2+ ranks off."""
    g = global_array((13, 3), np.float64, SEED)
    x = make(g, (size(),), (0, None))
    plan = x.halo_plan([(6, 6), 1])
    lo, hi = halo_oracle(g, (size(),), (0, None), None, [(6, 6), (1, 1)])
    halo = da.Box(lo, hi)
    touched = {r for r in range(size())
               if owned_box(g.shape, (size(),), (0, None), r).intersect(halo) is not None}
    assert {p.peer for p in plan.pattern.incoming} == touched - {rank()}
    if size() >= 3 and rank() in (0, size() - 1):  # blocks of 3-5 rows: 6 cross a neighbour
        assert any(abs(r - rank()) >= 2 for r in touched)
    for step in range(3):
        x.local[...] = g[x.box.slices()] + step
        np.testing.assert_array_equal(plan(x), padded_fetch(g + step, lo, hi))


def test_halo_plan_reuse_many_layouts():
    shape = SHAPES[2]
    for dims, split in some_layouts(size(), 2, 16, seed=11):
        g = global_array(shape, np.float32, SEED + 30)
        x = make(g, dims, split)
        plan = x.halo_plan([(1, 2), (3, 0)])
        lo, hi = halo_oracle(g, dims, split, None, [(1, 2), (3, 0)])
        for _ in range(2):
            x.local += 1
            g += 1
            np.testing.assert_array_equal(plan(x), padded_fetch(g, lo, hi))
