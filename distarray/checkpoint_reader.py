"""Reading a checkpoint in one process, array by array and slab by slab, without MPI.

:func:`distarray.checkpoint.load_checkpoint` fills distributed arrays on every rank at once.
Exporting or inspecting a checkpoint needs the opposite: the global arrays, one at a time,
in one process, without holding them all (le2012's parameters are 9 GB). A
:class:`CheckpointReader` reads any box of any saved array straight from the shards (the
reads :func:`~distarray.checkpoint.read_plan` names), and :meth:`CheckpointReader.slabs`
yields an array in C order as consecutive slabs along its first axis, each at most a given
number of bytes.

Every shard is checked against the manifest (size, sha256) before its first read.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import numpy as np

from distarray import Box

from .checkpoint import CheckpointError, _read_manifest, _read_part, _verify_shard, read_plan

__all__ = ["CheckpointReader", "CheckpointError", "slab_rows"]


def slab_rows(shape: tuple[int, ...], itemsize: int, max_bytes: int) -> int:
    """Rows of axis 0 per slab so that a slab holds at most ``max_bytes`` (at least one row;
    pure). A 0-d array is one slab."""
    if max_bytes < 1:
        raise ValueError(f"expected max_bytes >= 1, got {max_bytes}")
    if not shape:
        return 1
    row = math.prod(shape[1:]) * itemsize
    return max(1, min(shape[0], max_bytes // row if row else shape[0]))


class CheckpointReader:
    """The arrays of one complete checkpoint, read on demand in this process.

    Parameters
    ----------
    directory : str or Path
        The checkpoint directory (as :func:`~distarray.checkpoint.load_checkpoint` takes it;
        an interrupted final swap is followed to the complete copy).

    Raises
    ------
    CheckpointError
        No complete checkpoint there, or its manifest is unreadable or malformed.
    """

    def __init__(self, directory: str | Path):
        self.source, self._manifest = _read_manifest(Path(directory))
        self._verified: set[int] = set()

    @property
    def names(self) -> list[str]:
        """The saved arrays' names, sorted."""
        return sorted(self._manifest["arrays"])

    @property
    def meta(self) -> dict:
        """The ``meta`` stored with the checkpoint."""
        return self._manifest["meta"]

    def shape(self, name: str) -> tuple[int, ...]:
        """Global shape of array ``name``."""
        return tuple(self._entry(name)["shape"])

    def dtype(self, name: str) -> np.dtype:
        """Element type of array ``name``."""
        return np.dtype(self._entry(name)["dtype"])

    def nbytes(self, name: str) -> int:
        """Size of array ``name`` in bytes."""
        return math.prod(self.shape(name)) * self.dtype(name).itemsize

    def read(self, name: str, box: Box | None = None) -> np.ndarray:
        """Array ``name``'s elements inside ``box`` (default: all of it) as a new array.

        Raises
        ------
        CheckpointError
            A shard it reads is missing, truncated or corrupt.
        ValueError
            ``box`` is not inside the array.
        """
        entry = self._entry(name)
        bounds = Box((0,) * len(entry["shape"]), tuple(entry["shape"]))
        box = bounds if box is None else box
        inside = box.ndim == bounds.ndim and all(0 <= lo <= hi <= n for lo, hi, n in zip(box.lo, box.hi, bounds.hi))
        if not inside:
            raise ValueError(f"expected a box inside {bounds} for array {name!r}, got {box}")
        dtype = np.dtype(entry["dtype"])
        out = np.empty(box.shape, dtype)
        reads = read_plan(entry, box)
        with ExitStack() as stack:
            files = {}
            for r, offset, saved, part in reads:
                if r not in files:
                    path = self._shard(r)
                    files[r] = (path, stack.enter_context(open(path, "rb")))
                path, f = files[r]
                _read_part(f, path, offset, saved, part, dtype, out, box.lo)
        return out

    def slabs(self, name: str, max_bytes: int = 64 << 20) -> Iterator[np.ndarray]:
        """Array ``name`` as consecutive slabs along axis 0 (C order: their bytes, one after
        another, are the array's), each at most ``max_bytes`` or one row."""
        shape = self.shape(name)
        if not shape:
            yield self.read(name)
            return
        rows = slab_rows(shape, self.dtype(name).itemsize, max_bytes)
        for lo in range(0, shape[0], rows):
            hi = min(shape[0], lo + rows)
            yield self.read(name, Box((lo,) + (0,) * (len(shape) - 1), (hi,) + shape[1:]))

    # -- internals ------------------------------------------------------------------------------
    def _entry(self, name: str) -> dict:
        try:
            return self._manifest["arrays"][name]
        except KeyError:
            raise KeyError(f"checkpoint {self.source} holds no array {name!r} (it holds {self.names})") from None

    def _shard(self, rank: int) -> Path:
        """Shard ``rank``'s path, checked against the manifest the first time."""
        expected = self._manifest["shards"][rank]
        path = Path(self.source) / expected["file"]
        if rank not in self._verified:
            _verify_shard(path, expected)
            self._verified.add(rank)
        return path

