"""Boxes: axis-aligned regions of a global index space (half-open, per axis)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Box", "as_box"]


@dataclass(frozen=True)
class Box:
    """A half-open region ``[lo[k], hi[k])`` on every axis ``k`` of a global index space.

    ``lo`` may be negative and ``hi`` may pass the array's extent: the parts outside the
    global bounds read as zero in a fetch and are dropped by an accumulate.
    """

    lo: tuple[int, ...]
    hi: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi):
            raise ValueError(f"box lo and hi differ in length: {len(self.lo)} != {len(self.hi)}")
        bad = [k for k, (a, b) in enumerate(zip(self.lo, self.hi)) if b < a]
        if bad:
            raise ValueError(f"box stop < start on axes {bad}: lo={self.lo}, hi={self.hi}")

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.lo)

    @property
    def shape(self) -> tuple[int, ...]:
        """Extent on every axis."""
        return tuple(b - a for a, b in zip(self.lo, self.hi))

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for e in self.shape:
            n *= e
        return n

    @property
    def empty(self) -> bool:
        """True when the box holds no element."""
        return any(b == a for a, b in zip(self.lo, self.hi))

    def intersect(self, other: "Box") -> "Box | None":
        """The common part of two boxes, or None when they do not overlap."""
        lo = tuple(max(a, b) for a, b in zip(self.lo, other.lo))
        hi = tuple(min(a, b) for a, b in zip(self.hi, other.hi))
        if any(h <= l for l, h in zip(lo, hi)):
            return None
        return Box(lo, hi)

    def slices(self, origin: Sequence[int] | None = None) -> tuple[slice, ...]:
        """Slices selecting this box from an array whose element 0 sits at ``origin``."""
        origin = origin if origin is not None else (0,) * self.ndim
        return tuple(slice(a - o, b - o) for a, b, o in zip(self.lo, self.hi, origin))

    def expand(self, widths: Sequence[tuple[int, int]]) -> "Box":
        """This box grown by ``(before, after)`` elements on every axis."""
        return Box(
            tuple(a - w[0] for a, w in zip(self.lo, widths)),
            tuple(b + w[1] for b, w in zip(self.hi, widths)),
        )

    def outside(self, bounds: "Box") -> list["Box"]:
        """Disjoint boxes covering the part of this box that lies outside ``bounds``."""
        pieces = []
        lo, hi = list(self.lo), list(self.hi)
        for k in range(self.ndim):
            if lo[k] < bounds.lo[k]:
                pieces.append(Box(tuple(lo), tuple(hi[:k] + [min(bounds.lo[k], hi[k])] + hi[k + 1:])))
                lo[k] = min(bounds.lo[k], hi[k])
            if hi[k] > bounds.hi[k]:
                pieces.append(Box(tuple(lo[:k] + [max(bounds.hi[k], lo[k])] + lo[k + 1:]), tuple(hi)))
                hi[k] = max(bounds.hi[k], lo[k])
        return [p for p in pieces if not p.empty]


def as_box(box: "Box | Sequence", ndim: int) -> Box:
    """Normalise a box given as a Box, a sequence of ``(start, stop)`` pairs or of slices.

    Raises
    ------
    ValueError
        When the box has the wrong number of axes, a step, or a stop before its start.
    """
    if isinstance(box, Box):
        result = box
    else:
        try:
            axes = list(box)
            pairs = [(s.start, s.stop) if isinstance(s, slice) else tuple(s) for s in axes]
        except TypeError:
            raise TypeError(
                f"expected a box as a sequence of (start, stop) pairs or slices, got {box!r}"
            ) from None
        if any(isinstance(s, slice) and s.step not in (None, 1) for s in axes):
            raise ValueError(f"box slices take no step, got {box!r}")
        if any(len(p) != 2 or p[0] is None or p[1] is None for p in pairs):
            raise ValueError(f"every box axis needs an explicit (start, stop), got {box!r}")
        try:
            result = Box(tuple(operator.index(p[0]) for p in pairs), tuple(operator.index(p[1]) for p in pairs))
        except TypeError:
            raise TypeError(f"expected integer box bounds, got {box!r}") from None
    if result.ndim != ndim:
        raise ValueError(f"expected a box with {ndim} axes, got {result.ndim}: {box!r}")
    return result
