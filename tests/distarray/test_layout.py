"""Layout: validation, and rank boxes / owners against a brute-force ownership map (serial)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distarray.box import Box
from distarray.layout import Layout, balanced_blocks

FAST = settings(max_examples=60, deadline=None)


# -- oracles and strategies (also used by test_pattern) ------------------------------------
def oracle_owner_map(layout: Layout) -> np.ndarray:
    """Owner rank of every global element, from blocks/split/grid alone (row-major ranks)."""
    owner = np.full(layout.shape, -1, dtype=int)
    strides = [math.prod(layout.grid_shape[d + 1:]) for d in range(len(layout.grid_shape))]
    for coords in itertools.product(*(range(g) for g in layout.grid_shape)):
        rank = sum(c * s for c, s in zip(coords, strides))
        index = []
        for k, d in enumerate(layout.split):
            i = 0 if d is None else coords[d]
            start = sum(layout.blocks[k][:i])
            index.append(slice(start, start + layout.blocks[k][i]))
        assert (owner[tuple(index)] == -1).all(), "oracle: blocks overlap"
        owner[tuple(index)] = rank
    assert (owner >= 0).all(), "oracle: blocks leave a gap"
    return owner


def composition(draw, total: int, parts: int) -> tuple[int, ...]:
    """Random non-negative extents summing to ``total`` (zeros allowed anywhere)."""
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=parts - 1, max_size=parts - 1)))
    edges = [0, *cuts, total]
    return tuple(b - a for a, b in zip(edges, edges[1:]))


@st.composite
def layouts(draw, max_ndim=3, min_extent=0, max_extent=7, max_ranks=24, min_first=1):
    """A random valid layout: 1-3 axes, 1-D to 3-D grid over any axes (permuted), uneven or
    explicit blocks (zero-extent blocks included), occasionally a unit grid dim splitting nothing."""
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.lists(st.integers(min_extent, max_extent), min_size=ndim, max_size=ndim)))
    gdim = draw(st.integers(1, ndim))
    axes = draw(st.permutations(range(ndim)))[:gdim]  # axes[d] is split over grid dim d
    grid = [draw(st.integers(min_first, 4))]
    for _ in range(gdim - 1):
        grid.append(draw(st.integers(1, max(1, max_ranks // math.prod(grid)))))
    split = [None] * ndim
    for d, k in enumerate(axes):
        split[k] = d
    if draw(st.booleans()):  # an extra unit grid dimension that splits no axis
        grid.append(1)
    blocks = None
    if draw(st.booleans()):
        blocks = [
            None if d is None or draw(st.booleans()) else composition(draw, shape[k], grid[d])
            for k, d in enumerate(split)
        ]
    return Layout.create(shape, grid, split, blocks=blocks)


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, grid, split, blocks, match",
    [
        ((4, -1), (2,), None, None, r"non-negative extents, got \(4, -1\)"),
        ((4,), (), None, None, r"positive extents, got \(\)"),
        ((4,), (2, 0), None, None, r"positive extents, got \(2, 0\)"),
        ((4,), (2, 2), None, None, r"2-D grid \(2, 2\) needs a split for a 1-D array"),
        ((4, 4), (2,), (0,), None, r"one entry per array axis \(2\), got \(0,\)"),
        ((4, 4), (2,), (1, 0), None, r"distinct grid dimensions in range\(1\), got \(1, 0\)"),
        ((4, 4), (2, 2), (0, 0), None, r"distinct grid dimensions in range\(2\), got \(0, 0\)"),
        ((4, 4), (2,), (-1, None), None, r"range\(1\), got \(-1, None\)"),
        ((4, 4), (2, 3), (0, None), None, r"grid dimensions \[1\] of grid \(2, 3\) split no"),
        ((4, 4), (2,), None, [None], r"one entry per array axis \(2\), got 1"),
        ((5,), (2,), None, [(5,)], r"axis 0: expected 2 non-negative .* to 5, got \(5,\)"),
        ((5,), (2,), None, [(2, 2)], r"summing to 5, got \(2, 2\)"),
        ((5,), (2,), None, [(6, -1)], r"got \(6, -1\)"),
        ((5, 3), (2,), None, [None, (1, 2)], r"axis 1: expected 1 non-negative .* to 3, got \(1, 2\)"),
    ],
)
def test_create_errors(shape, grid, split, blocks, match):
    """Every inconsistent description raises ValueError naming expected and given."""
    with pytest.raises(ValueError, match=match):
        Layout.create(shape, grid, split, blocks=blocks)


def test_create_defaults():
    """Default split: axis k over grid dim k, the rest unsplit; default dtype float32."""
    lay = Layout.create((10, 7, 3), (3, 2))
    assert lay.split == (0, 1, None)
    assert lay.blocks == ((4, 3, 3), (4, 3), (3,))
    assert lay.dtype == np.float32 and lay.nranks == 6 and lay.ndim == 3
    assert lay.bounds == Box((0, 0, 0), (10, 7, 3))


# -- balanced blocks -----------------------------------------------------------------------
@pytest.mark.parametrize("extent", [0, 1, 5, 7, 12, 100])
@pytest.mark.parametrize("parts", [1, 2, 3, 7, 16])
def test_balanced_blocks(extent, parts):
    """Blocks sum to the extent, differ by at most one, larger first."""
    b = balanced_blocks(extent, parts)
    assert len(b) == parts and sum(b) == extent
    assert max(b) - min(b) <= 1
    assert list(b) == sorted(b, reverse=True)


def test_balanced_blocks_examples():
    """Hand-checked splits."""
    assert balanced_blocks(10, 3) == (4, 3, 3)
    assert balanced_blocks(11, 3) == (4, 4, 3)
    assert balanced_blocks(2, 4) == (1, 1, 0, 0)


# -- boxes and owners ----------------------------------------------------------------------
def check_tiling(lay: Layout) -> None:
    """Every element is owned exactly once, and box(rank) agrees with the oracle map."""
    count = np.zeros(lay.shape, dtype=int)
    expect = oracle_owner_map(lay)
    for r in range(lay.nranks):
        b = lay.box(r)
        assert b.ndim == lay.ndim and lay.local_shape(r) == b.shape
        assert all(0 <= lo <= hi <= n for lo, hi, n in zip(b.lo, b.hi, lay.shape)), b
        count[b.slices()] += 1
        assert (expect[b.slices()] == r).all()
        assert (expect == r).sum() == b.size
    assert (count == 1).all()


@FAST
@given(layouts())
def test_boxes_tile_global_shape(lay):
    """Rank boxes tile the global shape exactly for random layouts."""
    check_tiling(lay)


@pytest.mark.parametrize(
    "shape, grid, split, blocks",
    [
        ((3,), (5,), None, None),  # more ranks than extent: zero-extent blocks
        ((2, 9), (4, 2), None, None),
        ((4, 6, 8), (2, 3), (1, None, 0), None),  # permuted split
        ((5, 6), (3,), (None, 0), None),  # split a non-leading axis only
        ((6, 5, 4), (2, 2, 2), (2, 0, 1), None),
        ((7, 5), (3, 2), None, [(0, 7, 0), (5, 0)]),  # explicit blocks with zeros
        ((7, 5), (1, 2), (None, 1), [None, (1, 4)]),  # unit grid dim splitting nothing
        ((0, 4), (2, 2), None, None),  # empty array
    ],
)
def test_boxes_tile_examples(shape, grid, split, blocks):
    """Hand-picked awkward layouts tile exactly."""
    check_tiling(Layout.create(shape, grid, split, blocks=blocks))


def test_permuted_split_boxes():
    """split=(1, None, 0): axis 0 follows grid dim 1 and axis 2 grid dim 0."""
    lay = Layout.create((6, 4, 4), (2, 3), split=(1, None, 0))
    # rank 4 = coords (1, 1): axis 0 block 1 of (2, 2, 2), axis 2 block 1 of (2, 2)
    assert lay.coords(4) == (1, 1)
    assert lay.box(4) == Box((2, 0, 2), (4, 4, 4))
    assert lay.box(2) == Box((4, 0, 0), (6, 4, 2))


@FAST
@given(layouts(max_extent=5))
def test_owner_matches_oracle(lay):
    """owner(index) is the oracle's owner for every index; outside indices raise IndexError."""
    expect = oracle_owner_map(lay)
    for index in np.ndindex(*lay.shape):
        assert lay.owner(index) == expect[index], index
        assert lay.box(lay.owner(index)).intersect(Box(index, tuple(i + 1 for i in index)))
    for bad in ([-1] + [0] * (lay.ndim - 1), list(lay.shape), [0] * (lay.ndim + 1)):
        with pytest.raises(IndexError, match="outside the global shape"):
            lay.owner(bad)


@FAST
@given(st.data())
def test_owners_matches_brute_force(data):
    """owners(box) is the sorted set of ranks owning an element of box & bounds."""
    lay = data.draw(layouts())
    expect = oracle_owner_map(lay)
    for _ in range(5):
        lo, hi = [], []
        for n in lay.shape:
            a = data.draw(st.integers(-4, n + 3))
            lo.append(a)
            hi.append(data.draw(st.integers(a, n + 4)))
        box = Box(tuple(lo), tuple(hi))
        clip = tuple(slice(max(a, 0), max(min(b, n), 0)) for a, b, n in zip(lo, hi, lay.shape))
        assert lay.owners(box) == sorted(set(expect[clip].ravel().tolist())), box


def test_owners_examples():
    """Whole, outside and partly outside boxes on an uneven 1-D layout."""
    lay = Layout.create((7,), (3,))  # blocks (3, 2, 2)
    assert lay.owners(Box((-5,), (20,))) == [0, 1, 2]
    assert lay.owners(Box((-5,), (0,))) == []
    assert lay.owners(Box((7,), (9,))) == []
    assert lay.owners(Box((2,), (4,))) == [0, 1]
    assert lay.owners(Box((3,), (3,))) == []
    assert lay.owners(Box((6,), (10,))) == [2]


def test_owners_skips_zero_extent_blocks():
    """Ranks with empty blocks own nothing, even where their offset coincides with a box."""
    lay = Layout.create((4, 3), (4, 2), blocks=[(0, 2, 0, 2), (0, 3)])
    assert lay.owners(Box((0, 0), (4, 3))) == [3, 7]
    assert lay.owners(Box((2, 0), (3, 3))) == [7]
    assert lay.owner((2, 0)) == 7 and lay.owner((0, 2)) == 3


# -- rank numbering ------------------------------------------------------------------------
@pytest.mark.parametrize("grid", [(1,), (5,), (2, 3), (3, 1, 2), (2, 2, 2)])
def test_coords_row_major_round_trip(grid):
    """coords enumerates the grid row-major (last dim fastest) and rank_of inverts it."""
    lay = Layout.create((8,) * len(grid), grid)
    expect = list(itertools.product(*(range(g) for g in grid)))
    assert [lay.coords(r) for r in range(lay.nranks)] == expect
    assert [lay.rank_of(c) for c in expect] == list(range(lay.nranks))
    assert all(type(c) is int for c in lay.coords(lay.nranks - 1))
    for bad in (-1, lay.nranks):
        with pytest.raises(ValueError, match=rf"rank in range\({lay.nranks}\), got {bad}"):
            lay.coords(bad)
