"""exchange_pattern: pieces against a brute-force ownership map, for every rank (serial)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distarray.box import Box
from distarray.layout import Layout
from distarray.pattern import exchange_pattern

from .test_layout import layouts, oracle_owner_map

PAD = -1  # label for elements outside the global bounds


def labels(layout: Layout, box: Box) -> np.ndarray:
    """Oracle label of every element of ``box``: its owner rank, or PAD outside the bounds."""
    owner = oracle_owner_map(layout)
    out = np.full(box.shape, PAD, dtype=int)
    for local in np.ndindex(*box.shape):
        g = tuple(i + lo for i, lo in zip(local, box.lo))
        if all(0 <= i < n for i, n in zip(g, layout.shape)):
            out[local] = owner[g]
    return out


def check_patterns(layout: Layout, boxes: list[Box]) -> None:
    """Every rank's pattern agrees with the oracle; outgoing mirrors the peers' incoming."""
    patterns = [exchange_pattern(layout, boxes, r) for r in range(layout.nranks)]
    owner = oracle_owner_map(layout)
    for r, pat in enumerate(patterns):
        box = boxes[r]
        assert pat.rank == r and pat.box == box and pat.owned == layout.box(r)
        expect = labels(layout, box)
        painted = np.full(box.shape, -2, dtype=int)
        count = np.zeros(box.shape, dtype=int)

        def paint(piece: Box, label: int) -> None:
            assert not piece.empty and piece.intersect(box) == piece, (piece, box)
            count[piece.slices(box.lo)] += 1
            painted[piece.slices(box.lo)] = label

        if pat.local is not None:
            paint(pat.local, r)
        for p in pat.incoming:
            assert p.peer != r
            paint(p.box, p.peer)
        for b in pat.padding:
            paint(b, PAD)
        assert (count == 1).all(), f"rank {r}: pieces overlap or leave gaps in {box}"
        np.testing.assert_array_equal(painted, expect, err_msg=f"rank {r}, box {box}")

        peers_in = [p.peer for p in pat.incoming]
        peers_out = [p.peer for p in pat.outgoing]
        assert peers_in == sorted(set(peers_in)) and peers_out == sorted(set(peers_out))
        assert pat.received == int(((expect != r) & (expect != PAD)).sum())

        sent = 0
        for p in pat.outgoing:
            assert p.peer != r
            mirror = [q for q in patterns[p.peer].incoming if q.peer == r]
            assert [q.box for q in mirror] == [p.box], f"rank {r} -> {p.peer}"
            sent += p.box.size
        for peer, want in enumerate(boxes):  # oracle: who asked for an element r owns
            if peer != r:
                wanted = labels(layout, want) == r
                assert wanted.any() == (peer in peers_out), (r, peer)
        assert pat.sent == sent
        assert pat.sent == sum(
            int((labels(layout, want) == r).sum()) for p, want in enumerate(boxes) if p != r
        )
    total_in = sum(p.received for p in patterns)
    assert total_in == sum(p.sent for p in patterns)
    assert owner.size == sum(layout.box(r).size for r in range(layout.nranks))


@st.composite
def requests(draw, layout: Layout) -> list[Box]:
    """One box per rank: halos, far outside, empty, or anywhere."""
    out = []
    for r in range(layout.nranks):
        kind = draw(st.sampled_from(["any", "halo", "outside", "empty"]))
        own = layout.box(r)
        if kind == "halo":
            w = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(layout.ndim)]
            out.append(own.expand(w))
        elif kind == "outside":
            lo = tuple(n + draw(st.integers(0, 2)) for n in layout.shape)
            out.append(Box(lo, tuple(a + draw(st.integers(0, 2)) for a in lo)))
        else:
            lo, hi = [], []
            for n in layout.shape:
                a = draw(st.integers(-3, n + 2))
                lo.append(a)
                hi.append(a if kind == "empty" else draw(st.integers(a, n + 3)))
            out.append(Box(tuple(lo), tuple(hi)))
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_patterns_random(data):
    """Random layouts and per-rank boxes: every rank's pattern matches the oracle."""
    layout = data.draw(layouts(min_extent=1, max_extent=6, max_ranks=12, min_first=3))
    check_patterns(layout, data.draw(requests(layout)))


def test_pattern_box_spanning_many_owners():
    """A box covering the whole array plus a margin pulls from every other rank, pads the rest."""
    layout = Layout.create((7, 5), (3, 2))
    big = Box((-2, -1), (9, 7))
    boxes = [layout.box(r) for r in range(layout.nranks)]
    boxes[4] = big
    check_patterns(layout, boxes)
    pat = exchange_pattern(layout, boxes, 4)
    assert [p.peer for p in pat.incoming] == [0, 1, 2, 3, 5]
    assert pat.local == layout.box(4)
    assert sum(b.size for b in pat.padding) == big.size - 35
    assert pat.received == 35 - layout.box(4).size
    assert exchange_pattern(layout, boxes, 0).outgoing[0].box == layout.box(0)


def test_pattern_halo_exchange_1d():
    """Halo of width 1 on an uneven 1-D layout: neighbours swap one element each way."""
    layout = Layout.create((7,), (3,))  # blocks (3, 2, 2): [0,3) [3,5) [5,7)
    boxes = [layout.box(r).expand([(1, 1)]) for r in range(3)]
    check_patterns(layout, boxes)
    mid = exchange_pattern(layout, boxes, 1)
    assert [(p.peer, p.box) for p in mid.incoming] == [(0, Box((2,), (3,))), (2, Box((5,), (6,)))]
    assert [(p.peer, p.box) for p in mid.outgoing] == [(0, Box((3,), (4,))), (2, Box((4,), (5,)))]
    assert mid.padding == ()
    first = exchange_pattern(layout, boxes, 0)
    assert first.padding == (Box((-1,), (0,)),)
    assert first.received == 1 and first.sent == 1


def test_pattern_empty_and_outside_requests():
    """Empty requests and requests wholly outside the bounds exchange nothing."""
    layout = Layout.create((4, 4), (2, 2))
    boxes = [Box((1, 1), (1, 3)), Box((5, 5), (7, 6)), Box((-3, 0), (-1, 4)), layout.box(3)]
    check_patterns(layout, boxes)
    for r in range(4):
        pat = exchange_pattern(layout, boxes, r)
        assert pat.incoming == () and pat.outgoing == ()
    assert exchange_pattern(layout, boxes, 0).padding == ()
    assert exchange_pattern(layout, boxes, 1).padding == (Box((5, 5), (7, 6)),)


def test_pattern_zero_extent_owner():
    """A rank with an empty block neither sends nor receives, and is never a peer."""
    layout = Layout.create((2,), (4,))  # blocks (1, 1, 0, 0)
    boxes = [Box((-1,), (3,))] * 4
    check_patterns(layout, boxes)
    for r in (2, 3):
        pat = exchange_pattern(layout, boxes, r)
        assert pat.local is None and pat.outgoing == ()
        assert [p.peer for p in pat.incoming] == [0, 1]


def test_pattern_wrong_number_of_boxes():
    """One box per rank is required."""
    layout = Layout.create((4,), (2,))
    with pytest.raises(ValueError, match=r"one box per rank \(2\), got 1"):
        exchange_pattern(layout, [Box((0,), (1,))], 0)
