"""Box and as_box: geometry against NumPy slicing and painted arrays (serial, no MPI)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distarray.box import Box, as_box


@st.composite
def boxes(draw, ndim=None, lo_min=-4, hi_max=9):
    """A random box (possibly empty) with corners in [lo_min, hi_max]."""
    ndim = draw(st.integers(1, 3)) if ndim is None else ndim
    lo, hi = [], []
    for _ in range(ndim):
        a = draw(st.integers(lo_min, hi_max))
        lo.append(a)
        hi.append(draw(st.integers(a, hi_max)))
    return Box(tuple(lo), tuple(hi))


def test_shape_size_ndim():
    """Shape is hi - lo per axis, size their product."""
    b = Box((-2, 3, 0), (1, 7, 5))
    assert b.ndim == 3
    assert b.shape == (3, 4, 5)
    assert b.size == 60
    assert not b.empty


def test_empty_and_zero_dim():
    """A box with one zero extent is empty with size 0; a 0-D box holds one element."""
    assert Box((0, 4), (3, 4)).empty
    assert Box((0, 4), (3, 4)).size == 0
    assert Box((), ()).size == 1
    assert not Box((), ()).empty


def test_constructor_rejects_bad_corners():
    """Mismatched lengths and stop < start raise ValueError naming the problem."""
    with pytest.raises(ValueError, match="differ in length: 2 != 1"):
        Box((0, 0), (1,))
    with pytest.raises(ValueError, match=r"stop < start on axes \[1\]"):
        Box((0, 5), (1, 4))


def test_frozen_and_hashable():
    """Boxes compare by value and can be set members."""
    assert Box((0, 1), (2, 3)) == Box((0, 1), (2, 3))
    assert len({Box((0, 1), (2, 3)), Box((0, 1), (2, 3))}) == 1


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_intersect_matches_painting(data):
    """intersect is the set of elements inside both boxes, or None when there is none."""
    ndim = data.draw(st.integers(1, 3))
    a, b = data.draw(boxes(ndim)), data.draw(boxes(ndim))
    origin = (-4,) * ndim
    grid = np.zeros((14,) * ndim, dtype=int)
    grid[a.slices(origin)] += 1
    grid[b.slices(origin)] += 1
    both = grid == 2
    got = a.intersect(b)
    if not both.any():
        assert got is None
        return
    assert got is not None and not got.empty
    expect = np.zeros_like(both)
    expect[got.slices(origin)] = True
    np.testing.assert_array_equal(expect, both)
    assert b.intersect(a) == got


def test_intersect_touching_boxes_is_none():
    """Boxes that only share a face (half-open) do not overlap."""
    assert Box((0, 0), (2, 2)).intersect(Box((2, 0), (4, 2))) is None
    assert Box((0, 0), (2, 2)).intersect(Box((1, 1), (1, 2))) is None  # empty box


def test_slices_with_origin():
    """slices(origin) selects the box from an array whose element 0 sits at origin."""
    whole = np.arange(10 * 12).reshape(10, 12)
    origin = (3, -2)
    local = whole[3:, :10]  # global index (i, j) lives at local (i - 3, j + 2)
    b = Box((4, -2), (7, 5))
    assert b.slices(origin) == (slice(1, 4), slice(0, 7))
    np.testing.assert_array_equal(local[b.slices(origin)], whole[4:7, 0:7])
    assert b.slices() == (slice(4, 7), slice(-2, 5))


def test_expand():
    """expand grows each axis by (before, after); zero widths leave the box unchanged."""
    b = Box((2, 5), (4, 9))
    assert b.expand([(1, 2), (0, 3)]) == Box((1, 5), (6, 12))
    assert b.expand([(0, 0), (0, 0)]) == b
    assert b.expand([(3, 0), (0, 0)]).lo == (-1, 5)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_outside_tiles_the_box(data):
    """outside pieces are disjoint, outside bounds, inside the box, and with box & bounds cover it."""
    ndim = data.draw(st.integers(1, 3))
    box = data.draw(boxes(ndim))
    bounds = data.draw(boxes(ndim, lo_min=-2, hi_max=6))
    origin = (-4,) * ndim
    count = np.zeros((14,) * ndim, dtype=int)
    in_bounds = np.zeros_like(count, dtype=bool)
    in_bounds[bounds.slices(origin)] = True
    in_box = np.zeros_like(in_bounds)
    in_box[box.slices(origin)] = True
    pieces = box.outside(bounds)
    for p in pieces:
        assert not p.empty
        view = count[p.slices(origin)]
        assert view.shape == p.shape, "piece leaves the painted canvas"
        view += 1
        assert not in_bounds[p.slices(origin)].any(), f"{p} overlaps bounds {bounds}"
        assert in_box[p.slices(origin)].all(), f"{p} leaves box {box}"
    assert count.max(initial=0) <= 1, "pieces overlap"
    inner = box.intersect(bounds)
    if inner is not None:
        count[inner.slices(origin)] += 1
    np.testing.assert_array_equal(count, in_box.astype(int))


def test_outside_examples():
    """A box inside its bounds has no outside; a box wholly outside is its own outside."""
    bounds = Box((0, 0), (4, 4))
    assert Box((1, 1), (3, 3)).outside(bounds) == []
    assert Box((0, 0), (4, 4)).outside(bounds) == []
    far = Box((6, 1), (8, 3))
    assert sum(p.size for p in far.outside(bounds)) == far.size
    ring = Box((-1, -1), (5, 5)).outside(bounds)
    assert sum(p.size for p in ring) == 36 - 16


def test_as_box_forms():
    """as_box accepts a Box, (start, stop) pairs, slices, lists and NumPy ints."""
    b = Box((1, -2), (3, 4))
    assert as_box(b, 2) is b
    assert as_box([(1, 3), (-2, 4)], 2) == b
    assert as_box(((1, 3), [-2, 4]), 2) == b
    assert as_box((slice(1, 3), slice(-2, 4)), 2) == b
    assert as_box((slice(1, 3, 1), (-2, 4)), 2) == b
    assert as_box(np.array([[1, 3], [-2, 4]]), 2) == b
    got = as_box([(np.int64(1), np.int64(3))], 1)
    assert got == Box((1,), (3,)) and all(type(v) is int for v in got.lo + got.hi)


@pytest.mark.parametrize(
    "box, ndim, error, match",
    [
        (Box((0,), (1,)), 2, ValueError, r"expected a box with 2 axes, got 1"),
        ([(0, 1), (0, 1)], 3, ValueError, r"expected a box with 3 axes, got 2"),
        ([(0, 1)], 0, ValueError, r"expected a box with 0 axes, got 1"),
        ((slice(0, 4, 2),), 1, ValueError, r"take no step"),
        ((slice(None, 4),), 1, ValueError, r"explicit \(start, stop\)"),
        ((slice(0, None),), 1, ValueError, r"explicit \(start, stop\)"),
        ([(None, 3)], 1, ValueError, r"explicit \(start, stop\)"),
        ([(0, 1, 2)], 1, ValueError, r"explicit \(start, stop\)"),
        ([(3, 1)], 1, ValueError, r"stop < start on axes \[0\]"),
        ((slice(5, 2),), 1, ValueError, r"stop < start"),
        (5, 1, TypeError, r"expected a box as a sequence of \(start, stop\) pairs or slices, got 5"),
        ([3, 4], 2, TypeError, r"expected a box as a sequence"),
        (None, 1, TypeError, r"got None"),
    ],
)
def test_as_box_errors(box, ndim, error, match):
    """Bad boxes raise clear errors naming what was expected and what was given."""
    with pytest.raises(error, match=match):
        as_box(box, ndim)


def test_slices_cover_every_subbox():
    """For every sub-box of a small array, slices() selects exactly NumPy's slice."""
    a = np.arange(3 * 4).reshape(3, 4)
    for i0, i1 in itertools.combinations_with_replacement(range(4), 2):
        for j0, j1 in itertools.combinations_with_replacement(range(5), 2):
            b = as_box([(i0, i1), (j0, j1)], 2)
            np.testing.assert_array_equal(a[b.slices()], a[i0:i1, j0:j1])
            assert a[b.slices()].shape == b.shape
