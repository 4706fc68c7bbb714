"""Exchange patterns: which pieces move between which ranks for a (layout, boxes) pair.

Pure arithmetic, no MPI. Given the box every rank asks for, each rank works out what it
sends (parts of its own block that others asked for) and what it receives (parts of its
request that others own). A fetch moves data along this pattern; an accumulate, its adjoint,
moves it the other way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .box import Box
from .layout import Layout

__all__ = ["Piece", "Pattern", "exchange_pattern"]


@dataclass(frozen=True)
class Piece:
    """A region ``box`` (global indices) that travels between this rank and ``peer``."""

    peer: int
    box: Box


@dataclass(frozen=True)
class Pattern:
    """One rank's part of an exchange.

    Attributes
    ----------
    rank : int
        This rank.
    box : Box
        The region this rank asked for.
    owned : Box
        The region this rank owns.
    local : Box or None
        The part of ``box`` this rank owns itself (copied, never sent).
    outgoing : tuple of Piece
        For a fetch: parts of ``owned`` that other ranks asked for, by ascending peer.
    incoming : tuple of Piece
        For a fetch: parts of ``box`` that other ranks own, by ascending peer.
    padding : tuple of Box
        Parts of ``box`` outside the global bounds (zeros in a fetch).
    """

    rank: int
    box: Box
    owned: Box
    local: Box | None
    outgoing: tuple[Piece, ...]
    incoming: tuple[Piece, ...]
    padding: tuple[Box, ...]

    @property
    def received(self) -> int:
        """Elements this rank receives from other ranks in a fetch (sends in an accumulate)."""
        return sum(p.box.size for p in self.incoming)

    @property
    def sent(self) -> int:
        """Elements this rank sends to other ranks in a fetch (receives in an accumulate)."""
        return sum(p.box.size for p in self.outgoing)


def exchange_pattern(layout: Layout, boxes: Sequence[Box], rank: int) -> Pattern:
    """Work out ``rank``'s sends and receives when rank ``r`` asks for ``boxes[r]``.

    Parameters
    ----------
    layout : Layout
        Who owns what.
    boxes : sequence of Box
        The box each rank asks for, indexed by rank (``len(boxes) == layout.nranks``).
    rank : int
        The rank whose pattern to compute.
    """
    if len(boxes) != layout.nranks:
        raise ValueError(f"expected one box per rank ({layout.nranks}), got {len(boxes)}")
    owned = layout.box(rank)
    mine = boxes[rank]
    outgoing = []
    for peer, want in enumerate(boxes):
        piece = owned.intersect(want)
        if peer != rank and piece is not None:
            outgoing.append(Piece(peer, piece))
    incoming = []
    for peer in layout.owners(mine):
        piece = layout.box(peer).intersect(mine)
        if peer != rank and piece is not None:
            incoming.append(Piece(peer, piece))
    return Pattern(
        rank=rank,
        box=mine,
        owned=owned,
        local=owned.intersect(mine),
        outgoing=tuple(outgoing),
        incoming=tuple(incoming),
        padding=tuple(mine.outside(layout.bounds)),
    )
