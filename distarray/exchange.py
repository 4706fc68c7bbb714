"""Region exchange plans: fetch any box of a distributed array, and its adjoint, accumulate.

A plan is built once per (layout, boxes) pair (collective: the boxes are allgathered and
every rank validates all of them, so bad input raises on every rank together) and reused
every step. ``begin`` posts the messages and returns at once so interior work can overlap
them; ``end`` completes them. Only ranks whose regions overlap exchange messages. Host
pieces travel without a copy: contiguous ones as they are, strided ones through an MPI
subarray datatype built once per plan. Device pieces are packed on the device into buffers
the plan allocates once, and go to MPI directly when the library is CUDA-aware
(:func:`distarray.comm.cuda_aware`), else through host buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from . import backend
from . import comm as _comm
from .box import Box, as_box
from .grid import ProcessGrid
from .layout import Layout
from .pattern import Pattern, Piece, exchange_pattern

__all__ = ["FetchPlan", "AccumulatePlan", "is_contiguous"]


def _not_an_array(name: str, value: Any, shape: tuple[int, ...]) -> BaseException | None:
    """A TypeError when ``value`` is not an array (so that every rank can be told)."""
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "flags"):
        return None
    return TypeError(f"expected {name} as an array of shape {shape}, got {type(value).__name__}")


def is_contiguous(piece: tuple[int, ...], whole: tuple[int, ...]) -> bool:
    """True when a sub-box of extents ``piece`` is one contiguous run of a C-order array of
    shape ``whole``: after leading unit axes, one partial axis, then only full axes."""
    k = 0
    while k < len(piece) and piece[k] == 1:
        k += 1
    return all(p == w for p, w in zip(piece[k + 1:], whole[k + 1:]))


@dataclass(frozen=True)
class _Route:
    """How one piece moves, worked out once per plan: its peer, and where it sits in the
    local array it is read from or written into (slices, offsets, contiguity)."""

    key: tuple
    peer: int
    slices: tuple[slice, ...]
    contiguous: bool

    @property
    def shape(self) -> tuple[int, ...]:
        """Extents of the piece."""
        return tuple(s.stop - s.start for s in self.slices)

    @property
    def starts(self) -> tuple[int, ...]:
        """Offset of the piece in the local array."""
        return tuple(s.start for s in self.slices)


def _routes(kind: str, pieces: Sequence[Piece], origin: tuple[int, ...], whole: tuple[int, ...]) -> tuple[_Route, ...]:
    """Routes of ``pieces`` placed in an array of shape ``whole`` whose element 0 sits at ``origin``."""
    return tuple(
        _Route((kind, i), p.peer, p.box.slices(origin), is_contiguous(p.box.shape, whole))
        for i, p in enumerate(pieces)
    )


class _Plan:
    """What fetch and accumulate plans share: the pattern, the routes, the tag and the buffers."""

    def __init__(self, grid: ProcessGrid, layout: Layout, box: "Box | Sequence"):
        error = None
        try:
            box = as_box(box, layout.ndim)
        except (TypeError, ValueError) as exc:
            error = exc
        _comm.agree(grid.comm, error)
        if layout.grid_shape != grid.dims:
            raise ValueError(f"layout grid {layout.grid_shape} does not match the process grid {grid.dims}")
        self.grid = grid
        self.layout = layout
        boxes = _comm.allgather(grid.comm, box)
        self.pattern: Pattern = exchange_pattern(layout, boxes, grid.rank)
        self.tag = grid.next_tag()
        box, owned, local = self.pattern.box, self.pattern.owned, self.pattern.local
        # a fetch receives into the box and sends from the owned block; an accumulate the reverse
        self._box_routes = _routes("box", self.pattern.incoming, box.lo, box.shape)
        self._owned_routes = _routes("owned", self.pattern.outgoing, owned.lo, owned.shape)
        self._local = None if local is None else (local.slices(box.lo), local.slices(owned.lo))
        self._padding = tuple(pad.slices(box.lo) for pad in self.pattern.padding)
        self._buffers: dict[tuple, Any] = {}
        self._datatypes: dict[tuple, Any] = {}
        self._pending: tuple | None = None

    @property
    def box(self) -> Box:
        """The box this rank asked for."""
        return self.pattern.box

    @property
    def bytes_received(self) -> int:
        """Bytes this rank receives from other ranks per fetch (sends per accumulate)."""
        return self.pattern.received * self.layout.dtype.itemsize

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank sends to other ranks per fetch (receives per accumulate)."""
        return self.pattern.sent * self.layout.dtype.itemsize

    # -- shared machinery ---------------------------------------------------------------
    def _check_array(self, x: Any) -> BaseException | None:
        if not hasattr(x, "layout") or not hasattr(x, "local"):
            return TypeError(f"expected a DistArray, got {type(x).__name__}")
        if x.layout != self.layout:
            return ValueError(
                f"array layout does not match the plan's: expected {self.layout.describe()}, "
                f"got {x.layout.describe()}"
            )
        if x.grid is not self.grid and not _comm.congruent(x.grid.comm, self.grid.comm):
            return ValueError("array lives on another process grid than the plan")
        return None

    def _start(self, check: bool, error: BaseException | None) -> None:
        if self._pending is not None:
            error = error or RuntimeError("begin() called twice without end() on the same plan")
        if check:
            _comm.agree(self.grid.comm, error)
        elif error is not None:
            raise error

    def _buffer(self, route: _Route, xp: Any) -> Any:
        """A reusable contiguous buffer for one message (allocated on first use)."""
        key = route.key + (xp.__name__,)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = xp.empty(route.shape, dtype=self.layout.dtype)
        return buf

    def _datatype(self, route: _Route, whole: tuple[int, ...]) -> Any:
        """A reusable MPI subarray datatype selecting the route's piece in an array of shape ``whole``."""
        dtype = self._datatypes.get(route.key)
        if dtype is None:
            dtype = self._datatypes[route.key] = _comm.subarray_type(whole, route.shape, route.starts, self.layout.dtype)
        return dtype

    def _staged(self, array: Any) -> bool:
        return backend.is_device_array(array) and not _comm.cuda_aware()

    def _send(self, route: _Route, base: Any) -> _comm.Request:
        """Send the route's piece of ``base`` to its peer.

        Contiguous pieces and host arrays go without a copy (a subarray datatype for strided
        host pieces); device pieces are packed on the device, then staged through host
        memory when MPI is not CUDA-aware.
        """
        if self._staged(base):
            buf = self._buffer(route, backend.namespace("numpy"))
            backend.copy_to_host(base[route.slices], buf)
        elif route.contiguous:
            buf = base[route.slices]
        elif not backend.is_device_array(base):
            return _comm.isend(self.grid.comm, base, route.peer, self.tag, self._datatype(route, base.shape))
        else:
            buf = self._buffer(route, backend.get_array_module(base))
            buf[...] = base[route.slices]
            backend.synchronize(buf)
        return _comm.isend(self.grid.comm, buf, route.peer, self.tag)

    def _recv(self, route: _Route, base: Any, in_place: bool) -> tuple[_comm.Request, tuple | None]:
        """Receive the route's piece of ``base`` from its peer.

        With ``in_place`` (a fetch) the data lands in ``base`` directly where it can;
        otherwise (or when staging) in a buffer, returned with its target as
        ``(target, buffer)`` for the caller to copy or add after the wait.
        """
        if in_place and not self._staged(base):
            if route.contiguous:
                return _comm.irecv(self.grid.comm, base[route.slices], route.peer, self.tag), None
            if not backend.is_device_array(base):
                datatype = self._datatype(route, base.shape)
                return _comm.irecv(self.grid.comm, base, route.peer, self.tag, datatype), None
        xp = backend.namespace("numpy") if self._staged(base) else backend.get_array_module(base)
        buf = self._buffer(route, xp)
        return _comm.irecv(self.grid.comm, buf, route.peer, self.tag), (base[route.slices], buf)


class FetchPlan(_Plan):
    """Fetch one box per rank from arrays of one layout: reusable, with begin/end.

    Collective to build: call on every rank of the grid, each with the box it wants.

    Parameters
    ----------
    grid : ProcessGrid
        The ranks.
    layout : Layout
        Layout of the arrays this plan will read.
    box : Box or sequence of (start, stop)
        Global region this rank wants; may reach outside the bounds (zeros there) and
        span any number of owners.
    """

    def begin(self, x: Any, out: Any = None, remote_only: bool = False, check: bool = True) -> None:
        """Start fetching this rank's box of ``x``; returns at once (collective).

        Parameters
        ----------
        x : DistArray
            Source, with the plan's layout. Do not modify it before :meth:`end`.
        out : array, optional
            Where to write the box (C-contiguous, shape ``box.shape``, the array's dtype
            and backend); a new array by default. This rank's own part and the zero
            padding are in place when ``begin`` returns, so work on them can overlap the
            messages.
        remote_only : bool
            Write only the parts other ranks own, leaving this rank's part and the zero
            padding in ``out`` as an earlier call (or the caller) left them: the ghost-cell
            update of a stencil loop. Needs ``out``.
        check : bool
            Validate the arguments on every rank together (one small Allreduce). Must be
            the same on every rank.
        """
        error = self._check_array(x)
        if error is None and remote_only and out is None:
            error = ValueError("remote_only=True needs out=, the array holding the other parts")
        if error is None and out is not None:
            error = self._check_out(out, x.local)
        self._start(check, error)
        if out is None:
            out = backend.get_array_module(x.local).empty(self.box.shape, dtype=self.layout.dtype)  # (box shape)
        if not remote_only:
            for pad in self._padding:
                out[pad] = 0
        unpacks, requests = [], []
        for route in self._box_routes:
            request, unpack = self._recv(route, out, in_place=True)
            requests.append(request)
            if unpack is not None:
                unpacks.append(unpack)
        backend.synchronize(x.local)
        requests += [self._send(route, x.local) for route in self._owned_routes]
        if not remote_only and self._local is not None:  # this rank's part is ready at once
            in_box, in_owned = self._local
            out[in_box] = x.local[in_owned]
        self._pending = (x, out, unpacks, requests)

    def _check_out(self, out: Any, local: Any) -> BaseException | None:
        """What is wrong with ``out`` for this plan and source block, or None."""
        error = _not_an_array("out", out, self.box.shape)
        if error is not None:
            return error
        if tuple(out.shape) != self.box.shape or out.dtype != self.layout.dtype:
            return ValueError(
                f"expected out of shape {self.box.shape} and dtype {self.layout.dtype}, "
                f"got {tuple(out.shape)} and {out.dtype}"
            )
        if backend.get_array_module(out) is not backend.get_array_module(local):
            return TypeError(f"out is a {backend.backend_name(out)} array, x a {backend.backend_name(local)} one")
        if not out.flags.c_contiguous:
            return ValueError("expected a C-contiguous out array")
        return None

    def end(self) -> Any:
        """Complete the fetch started by :meth:`begin`; returns the dense box (collective)."""
        if self._pending is None:
            raise RuntimeError("end() called without begin()")
        x, out, unpacks, requests = self._pending
        _comm.waitall(requests)
        for target, buf in unpacks:
            target[...] = backend.like(buf, target)
        self._pending = None
        return out

    def __call__(self, x: Any, out: Any = None) -> Any:
        """Fetch in one go: ``begin`` then ``end`` (collective)."""
        self.begin(x, out)
        return self.end()


class AccumulatePlan(_Plan):
    """Add one box of values per rank into the owners' blocks: the adjoint of a fetch.

    Collective to build: call on every rank of the grid, each with the box its values
    cover. Parts of the box outside the global bounds are dropped. Contributions to an
    element are added in ascending order of the sending rank, so results are
    deterministic for a given set of boxes.
    """

    def begin(self, x: Any, values: Any, check: bool = True) -> None:
        """Start adding ``values`` (this rank's box) into ``x``; returns at once (collective).

        Do not modify ``values`` or ``x`` before :meth:`end`.
        """
        error = self._check_array(x) or _not_an_array("values", values, self.box.shape)
        if error is None:
            if tuple(values.shape) != self.box.shape or values.dtype != self.layout.dtype:
                error = ValueError(
                    f"expected values of shape {self.box.shape} and dtype {self.layout.dtype}, "
                    f"got {tuple(values.shape)} and {values.dtype}"
                )
            elif backend.get_array_module(values) is not backend.get_array_module(x.local):
                error = TypeError(
                    f"values is a {backend.backend_name(values)} array, x a {backend.backend_name(x.local)} one"
                )
        self._start(check, error)
        values = backend.get_array_module(values).ascontiguousarray(values)  # no copy when already so
        adds, requests = [], []
        for route in self._owned_routes:  # others' values landing in my block
            request, add = self._recv(route, x.local, in_place=False)
            requests.append(request)
            adds.append((route.peer,) + add)
        backend.synchronize(values)
        requests += [self._send(route, values) for route in self._box_routes]  # my values others own
        if self._local is not None:
            in_box, in_owned = self._local
            adds.append((self.grid.rank, x.local[in_owned], values[in_box]))
        adds.sort(key=lambda a: a[0])
        self._pending = (adds, requests)

    def end(self) -> None:
        """Complete the accumulate started by :meth:`begin` (collective)."""
        if self._pending is None:
            raise RuntimeError("end() called without begin()")
        adds, requests = self._pending
        _comm.waitall(requests)
        for _, target, buf in adds:
            target += backend.like(buf, target)
        self._pending = None

    def __call__(self, x: Any, values: Any) -> None:
        """Accumulate in one go: ``begin`` then ``end`` (collective)."""
        self.begin(x, values)
        self.end()
