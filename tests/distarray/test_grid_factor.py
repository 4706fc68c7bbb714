"""factor_grid, halo_box and is_contiguous against brute force and NumPy (serial)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from distarray.array import halo_box
from distarray.box import Box
from distarray.exchange import is_contiguous
from distarray.grid import factor_grid
from distarray.layout import Layout


# -- factor_grid ---------------------------------------------------------------------------
def surface(dims, extents) -> int:
    """Total cut surface: sum_k (d_k - 1) * prod_{j != k} e_j."""
    return sum(
        (d - 1) * math.prod(e for j, e in enumerate(extents) if j != k) for k, d in enumerate(dims)
    )


def all_grids(nranks: int, ndim: int) -> list[tuple[int, ...]]:
    """Every ordered grid of ``ndim`` positive dims with product ``nranks`` (by brute force)."""
    return [g for g in itertools.product(range(1, nranks + 1), repeat=ndim) if math.prod(g) == nranks]


@pytest.mark.parametrize(
    "nranks, extents, expect",
    [
        (4, (200, 200), (2, 2)),
        (3, (200, 200), (3, 1)),
        (4, (2, 100), (1, 4)),
        (1, (5, 5, 5), (1, 1, 1)),
        (6, (100,), (6,)),
        (8, (64, 64, 64), (2, 2, 2)),
        (6, (300, 200), (3, 2)),
        (12, (1, 100, 100), (1, 4, 3)),
    ],
)
def test_factor_grid_examples(nranks, extents, expect):
    """Hand-checked choices."""
    assert factor_grid(nranks, extents) == expect


CASES = [
    (n, ext)
    for n in range(1, 13)
    for ext in [(5,), (3, 8), (8, 3), (10, 10), (2, 30), (4, 4, 4), (1, 6, 9), (2, 3, 50), (7, 2, 2)]
]


@pytest.mark.parametrize("nranks, extents", CASES)
def test_factor_grid_brute_force(nranks, extents):
    """Product is nranks; no dim exceeds its extent when some grid fits; minimal cut surface."""
    got = factor_grid(nranks, extents)
    assert isinstance(got, tuple) and len(got) == len(extents)
    assert math.prod(got) == nranks and all(d >= 1 for d in got)
    grids = all_grids(nranks, len(extents))
    fitting = [g for g in grids if all(d <= e for d, e in zip(g, extents))]
    pool = fitting or grids
    assert got in pool, f"{got} starves an axis though {fitting[:3]} fit"
    best = min(surface(g, extents) for g in pool)
    assert surface(got, extents) == best
    ties = [g for g in pool if surface(g, extents) == best]
    assert got == max(ties), f"tie among {ties} should favour earlier axes"


def test_factor_grid_starves_only_when_forced():
    """With 8 ranks over extents (2, 3) nothing fits; the result is still a valid grid."""
    got = factor_grid(8, (2, 3))
    assert math.prod(got) == 8
    assert surface(got, (2, 3)) == min(surface(g, (2, 3)) for g in all_grids(8, 2))


@pytest.mark.parametrize("nranks, extents", [(0, (4,)), (-2, (4, 4)), (2, ()), (1, [])])
def test_factor_grid_errors(nranks, extents):
    """nranks < 1 or no extents raise ValueError naming what was given."""
    with pytest.raises(ValueError, match=r"expected nranks >= 1 and at least one extent, got"):
        factor_grid(nranks, extents)


# -- halo_box ------------------------------------------------------------------------------
LAYOUT = Layout.create((12, 10, 6), (3, 2), split=(1, None, 0))  # axis 0 over dim 1, axis 2 over dim 0


def test_halo_box_int_applies_to_split_axes_only():
    """An int width grows only split axes, on both sides (outside the bounds is allowed)."""
    for r in range(LAYOUT.nranks):
        own = LAYOUT.box(r)
        got = halo_box(LAYOUT, r, 2)
        assert got.lo == (own.lo[0] - 2, own.lo[1], own.lo[2] - 2)
        assert got.hi == (own.hi[0] + 2, own.hi[1], own.hi[2] + 2)
    assert halo_box(LAYOUT, 0, 0) == LAYOUT.box(0)


def test_halo_box_per_axis_ints_and_pairs():
    """Per-axis ints grow both sides of every named axis; pairs give (before, after)."""
    own = LAYOUT.box(3)  # coords (1, 1): axis 0 rows [6, 12) of (6, 6), axis 2 [2, 4) of (2, 2, 2)
    assert own == Box((6, 0, 2), (12, 10, 4))
    assert halo_box(LAYOUT, 3, [1, 3, 0]) == Box((5, -3, 2), (13, 13, 4))
    assert halo_box(LAYOUT, 3, [(1, 0), (0, 2), (3, 1)]) == Box((5, 0, -1), (12, 12, 5))
    assert halo_box(LAYOUT, 3, [(1, 0), 2, [0, 1]]) == Box((5, -2, 2), (12, 12, 5))


@pytest.mark.parametrize(
    "widths, match",
    [
        (-1, r"non-negative halo widths, got -1"),
        ([1, -1, 0], r"non-negative halo widths"),
        ([(1, 0), (0, -2), (0, 0)], r"non-negative halo widths"),
        ([(1, 2, 3), 0, 0], r"non-negative halo widths"),
        ([(1,), 0, 0], r"non-negative halo widths"),
        ([1, 1], r"halo widths for 3 axes, got 2"),
        ([1, 1, 1, 1], r"halo widths for 3 axes, got 4"),
    ],
)
def test_halo_box_errors(widths, match):
    """Negative widths, bad pairs and the wrong number of axes raise ValueError."""
    with pytest.raises(ValueError, match=match):
        halo_box(LAYOUT, 0, widths)


# -- is_contiguous -------------------------------------------------------------------------
def numpy_contiguous(piece, whole, offset) -> bool:
    """NumPy's verdict on the sub-box ``piece`` at ``offset`` of a C-order array ``whole``."""
    a = np.empty(whole, dtype=np.float32)
    view = a[tuple(slice(o, o + p) for o, p in zip(offset, piece))]
    assert view.shape == tuple(piece)
    return bool(view.flags.c_contiguous)


@pytest.mark.parametrize("whole", [(5,), (3, 4), (4, 1), (2, 3, 4), (3, 1, 4), (1, 3, 2), (2, 2, 1, 3)])
def test_is_contiguous_matches_numpy_exhaustively(whole):
    """Every non-empty sub-box at every offset: is_contiguous agrees with NumPy's flag."""
    checked = 0
    for piece in itertools.product(*(range(1, w + 1) for w in whole)):
        for offset in itertools.product(*(range(w - p + 1) for w, p in zip(whole, piece))):
            expect = numpy_contiguous(piece, whole, offset)
            assert is_contiguous(piece, whole) == expect, (piece, whole, offset)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize(
    "piece, whole, expect",
    [
        ((1, 1, 3), (4, 5, 6), True),  # leading unit axes, then a partial axis
        ((1, 2, 6), (4, 5, 6), True),  # unit, partial, full
        ((3, 5, 6), (4, 5, 6), True),  # partial leading axis, full trailing axes
        ((4, 5, 6), (4, 5, 6), True),  # the whole array
        ((2, 2, 6), (4, 5, 6), False),  # two partial axes
        ((1, 5, 2), (4, 5, 6), False),  # partial last axis after a full one
        ((2, 1, 6), (4, 5, 6), False),  # unit axis after a partial one is not leading
        ((1, 1, 1), (4, 5, 6), True),
    ],
)
def test_is_contiguous_examples(piece, whole, expect):
    """Named cases, each checked against NumPy too (at offset 0 and at the last offset)."""
    assert is_contiguous(piece, whole) == expect
    last = tuple(w - p for w, p in zip(whole, piece))
    assert numpy_contiguous(piece, whole, (0,) * len(whole)) == expect
    assert numpy_contiguous(piece, whole, last) == expect
