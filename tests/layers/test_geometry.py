"""Window arithmetic (pure): output sizes, input boxes, the interior and the border strips."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from distarray import Box, Layout
from layers.geometry import Window, border_regions, input_box, interior


def test_out_extent_matches_le2012():
    # 200 -> 183 (k=18) -> 179 (pool 5) -> 175 (LCN 5)
    assert Window(18).out_extent(200) == 183
    assert Window(5).out_extent(183) == 179
    assert Window(5).out_extent(179) == 175
    assert Window(4, 2, 1).out_extent(10) == 5
    with pytest.raises(ValueError, match="at least 3 for a 5x5 window with padding 1, got 2"):
        Window(5, 1, 1).out_extent(2)


def test_window_validates():
    with pytest.raises(ValueError, match="stride >= 1"):
        Window(3, 0)
    with pytest.raises(TypeError, match="integer"):
        Window(3.5)


@pytest.mark.parametrize("k, s, p", [(1, 1, 0), (3, 1, 0), (4, 2, 1), (7, 1, 3), (5, 3, 2)])
@pytest.mark.parametrize("grid", [(1, 1), (2, 1), (1, 3), (2, 2), (4, 1)])
def test_interior_and_borders_partition_each_block(k, s, p, grid):
    H, W = 13, 11
    win = Window(k, s, p)
    oh, ow = win.out_extent(H), win.out_extent(W)
    out_layout = Layout.create((oh, ow, 1, 1), grid, split=(0, 1, None, None))
    in_layout = Layout.create((H, W, 1, 1), grid, split=(0, 1, None, None))
    for rank in range(out_layout.nranks):
        block, owned = out_layout.box(rank), in_layout.box(rank)
        shape = block.shape[:2]
        inner = interior(win, block, owned)
        regions = border_regions(shape, inner)
        (i0, i1), (j0, j1) = inner
        if i1 > i0 and j1 > j0:
            regions = regions + [inner]
        cover = np.zeros(shape, int)
        for (a0, a1), (b0, b1) in regions:
            cover[a0:a1, b0:b1] += 1
        assert (cover == 1).all(), (rank, inner, regions)
        box = input_box(win, block, 1, 1)
        for i, j in itertools.product(range(shape[0]), range(shape[1])):
            gi, gj = block.lo[0] + i, block.lo[1] + j
            rows, cols = win.span(gi, gi + 1), win.span(gj, gj + 1)
            inside = owned.lo[0] <= rows[0] and rows[1] <= owned.hi[0] and owned.lo[1] <= cols[0] and cols[1] <= owned.hi[1]
            assert inside == (i0 <= i < i1 and j0 <= j < j1)  # the interior is exactly the windows inside
            assert box.lo[0] <= rows[0] and rows[1] <= box.hi[0] and box.lo[1] <= cols[0] and cols[1] <= box.hi[1]


def test_input_box_reaches_into_the_padding():
    box = input_box(Window(4, 2, 1), Box((0, 2, 0, 0), (3, 4, 1, 1)), 3, 8)
    assert box == Box((-1, 3, 0, 0), (7, 9, 3, 8))
