"""Checkpoints of distributed arrays: one shard file per rank plus a JSON manifest.

A checkpoint is a directory holding ``shard-{rank:05d}.bin`` (that rank's blocks of every
array, in sorted-name order, raw C-order bytes) and ``manifest.json``, written last by rank 0;
without it the checkpoint is incomplete and never loaded. The manifest (format version 1)::

    {"format": "cots-checkpoint", "version": 1, "meta": {...}, "nranks": 2, "grid": [2, 1],
     "arrays": {"w": {"shape": [5, 7], "dtype": "<f4", "grid": [2, 1], "split": [0, 1],
                      "blocks": [[3, 2], [7]],
                      "ranks": [{"lo": [0, 0], "hi": [3, 7], "offset": 0, "nbytes": 84}, ...]}},
     "shards": [{"file": "shard-00000.bin", "nbytes": 84, "sha256": "..."}, ...]}

(``grid``: the arrays' grid when they share one, else null; ``meta``: rank 0's.)

Atomic saves: every file is written under a temporary name, fsynced and renamed. A save
fills a hidden sibling ``.NAME.tmp-TOKEN`` (shards, then the manifest once every shard is on
disk), swaps it in by renaming ``NAME -> .NAME.old-TOKEN`` and ``.NAME.tmp-TOKEN -> NAME``,
and deletes the leftovers. A crash before the first rename leaves the old checkpoint at
``NAME``, one after the second the new one; between them, :func:`load_checkpoint` and
:func:`latest_checkpoint` read the complete ``.tmp-`` sibling in place of ``NAME``.

Resharding: with the saved layout, each rank reads its own region of its own shard; with
another (rank count, grid, split, blocks), each rank intersects its box with the saved boxes
and reads exactly those row ranges from those shards. Redistribution
(:meth:`distarray.DistArray.redistribute`) cannot do this: the saved rank count may exceed
the current one, so the saved layout cannot be instantiated on the current grid.

Every rank must see the same path: across nodes, a shared filesystem, as on clusters.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from distarray import Box, DistArray, backend
from distarray import comm as _comm

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "checkpoint_names", "checkpoint_meta",
           "resolve_checkpoint", "remove_checkpoint", "checkpoint_name", "read_plan"]

FORMAT = "cots-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
SHARD = "shard-{:05d}.bin"  # .format(rank)
_CHUNK = 1 << 22  # bytes per read when hashing a shard
_LEFTOVER = re.compile(r"\.(.+)\.(?:tmp|old)-[0-9a-f]+")  # a save's hidden sibling: .NAME.tmp-T, .NAME.old-T


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read: missing, truncated, corrupt, mismatched."""


# -- agreement: an error found on one rank raised on every rank ---------------------------
def _agree(comm: _comm.Comm, error: BaseException | None) -> None:
    """Collective: :func:`distarray.comm.agree`, but another rank's CheckpointError is raised
    here as a CheckpointError (agree gives it as a RemoteError), its message prefixed "rank k:"."""
    try:
        _comm.agree(comm, error)
    except _comm.RemoteError as exc:
        raise CheckpointError(str(exc)) from None


def _attempt(work: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """``(work(), None)``, or ``(None, error)`` for :func:`_agree` (an OSError as a CheckpointError)."""
    try:
        return work(), None
    except OSError as exc:
        return None, CheckpointError(f"checkpoint I/O failed: {exc}")
    except Exception as exc:  # any error: the other ranks must not be left waiting
        return None, exc


def _on_root(comm: _comm.Comm, work: Callable[[], Any]) -> Any:
    """Collective: run ``work`` on rank 0; its result on every rank, its error raised on all."""
    result, error = _attempt(work) if comm.Get_rank() == 0 else (None, None)
    _agree(comm, error)
    return _comm.broadcast(comm, result)


def _check_arrays(arrays: Any) -> Exception | None:
    """The first problem with ``arrays`` (a non-empty dict of str -> DistArray), or None."""
    if not isinstance(arrays, dict) or not arrays:
        return TypeError(f"expected a non-empty dict of name -> DistArray, got {type(arrays).__name__}")
    for name, a in arrays.items():
        if not isinstance(name, str) or not isinstance(a, DistArray):
            return TypeError(f"expected str -> DistArray, got {name!r} -> {type(a).__name__}")
        if a.dtype.hasobject:
            return TypeError(f"array {name!r}: cannot checkpoint dtype {a.dtype}")
    first = next(iter(arrays.values())).grid.comm
    odd = [n for n, a in arrays.items() if not _comm.congruent(a.grid.comm, first)]
    if odd:
        return ValueError(f"arrays {odd} are on grids over other ranks than {next(iter(arrays))!r}")
    return None


def _validated(arrays: Any) -> tuple[_comm.Comm, list[str]]:
    """Collective: check ``arrays`` on every rank together; their comm and sorted names."""
    values = arrays.values() if isinstance(arrays, dict) else ()
    comm = next((a.grid.comm for a in values if isinstance(a, DistArray)), _comm.world())
    _agree(comm, _check_arrays(arrays))
    names = sorted(arrays)
    _comm.same_everywhere(comm, [(n, arrays[n].layout.describe()) for n in names], "checkpoint arrays")
    return comm, names


# -- files ------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` durable (where the platform allows it)."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, chunks: Iterable[Any]) -> tuple[int, str]:
    """Write ``chunks`` (bytes-like) to ``.NAME.tmp`` beside ``path``, fsync, rename to ``path``.
    Returns the size and sha256 hex digest of what was written."""
    tmp = path.with_name(f".{path.name}.tmp")
    digest, size = hashlib.sha256(), 0
    with open(tmp, "wb") as f:
        for view in map(memoryview, chunks):
            if view.nbytes == 0:  # an empty block: memoryview cannot cast it
                continue
            view = view.cast("B")
            f.write(view)
            digest.update(view)
            size += view.nbytes
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return size, digest.hexdigest()


def _remove(path: Path) -> None:
    """Delete checkpoint directory ``path``: the manifest first, so a crash midway leaves an
    incomplete checkpoint, never a wrong complete one."""
    with suppress(OSError):
        (path / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def _siblings(directory: Path) -> list[tuple[str, str, Path]]:
    """(kind, token, path) of the save leftovers of ``directory``: ``.NAME.tmp-*``, ``.NAME.old-*``."""
    pattern = re.compile(rf"\.{re.escape(directory.name)}\.(tmp|old)-([0-9a-f]+)")
    entries = directory.parent.iterdir() if directory.parent.is_dir() else ()
    found = [(pattern.fullmatch(p.name), p) for p in entries]
    return [(m.group(1), m.group(2), p) for m, p in found if m and p.is_dir()]


def resolve_checkpoint(directory: str | Path) -> Path | None:
    """Where the complete checkpoint ``directory`` is: itself, or when a crash interrupted the
    final swap of a save, its newer complete sibling (``.tmp-`` before ``.old-``); else None
    (local: no MPI). :func:`load_checkpoint` and :func:`checkpoint_meta` read from there."""
    directory = Path(directory)
    if (directory / MANIFEST).is_file():
        return directory
    done = [(kind == "tmp", token, p) for kind, token, p in _siblings(directory) if (p / MANIFEST).is_file()]
    return max(done)[2] if done else None


def remove_checkpoint(directory: str | Path) -> None:
    """Delete checkpoint ``directory`` and its save leftovers, manifests first, so a crash
    midway leaves incomplete checkpoints, never a wrong complete one (local: no MPI; call it
    on one rank)."""
    directory = Path(directory)
    for _, _, leftover in _siblings(directory):
        _remove(leftover)
    if directory.is_dir():
        _remove(directory)


def checkpoint_name(entry: str) -> str:
    """The checkpoint a directory entry named ``entry`` stands for: a save's hidden leftover
    ``.NAME.tmp-T`` or ``.NAME.old-T`` gives ``NAME``, any other name itself (pure)."""
    match = _LEFTOVER.fullmatch(entry)
    return match.group(1) if match else entry


# -- saving -------------------------------------------------------------------------------------
def _check_meta(meta: Any) -> None:
    """Raise TypeError unless ``meta`` is a JSON-serialisable dict."""
    if not isinstance(meta, dict):
        raise TypeError(f"expected meta as a dict, got {type(meta).__name__}")
    json.dumps(meta)  # a TypeError naming what is not JSON


def _blocks(arrays: dict[str, DistArray], names: list[str]) -> Iterator[np.ndarray]:
    """This rank's blocks, in ``names`` order, as C-contiguous host arrays (one at a time)."""
    return (np.ascontiguousarray(backend.to_host(arrays[n].local)) for n in names)


def _manifest(arrays: dict[str, DistArray], names: list[str], meta: dict,
              shards: list[tuple[int, str]]) -> dict:
    """The manifest of a save (pure): layouts, every rank's boxes and offsets, shard digests."""
    nranks = len(shards)
    offsets = [0] * nranks
    entries = {}
    for n in names:
        layout = arrays[n].layout
        ranks = []
        for r in range(nranks):
            box = layout.box(r)
            nbytes = box.size * layout.dtype.itemsize
            ranks.append({"lo": list(box.lo), "hi": list(box.hi), "offset": offsets[r], "nbytes": nbytes})
            offsets[r] += nbytes
        entries[n] = {"shape": list(layout.shape), "dtype": layout.dtype.str,
                      "grid": list(layout.grid_shape), "split": list(layout.split),
                      "blocks": [list(b) for b in layout.blocks], "ranks": ranks}
    grids = {tuple(arrays[n].grid.dims) for n in names}
    return {"format": FORMAT, "version": VERSION, "meta": meta, "nranks": nranks,
            "grid": list(grids.pop()) if len(grids) == 1 else None, "arrays": entries,
            "shards": [{"file": SHARD.format(r), "nbytes": size, "sha256": sha}
                       for r, (size, sha) in enumerate(shards)]}


def _stage(directory: Path) -> Path:
    """Rank 0: create the hidden staging sibling of ``directory`` (and the parents)."""
    if directory.name in ("", ".", ".."):
        raise CheckpointError(f"expected a checkpoint directory with a name, got {str(directory)!r}")
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"checkpoint path {directory} exists and is not a directory")
    staging = directory.parent / f".{directory.name}.tmp-{time.time_ns():016x}"
    staging.mkdir(parents=True)
    return staging


def _commit(directory: Path, staging: Path, manifest: dict) -> None:
    """Rank 0: write the manifest into the complete staging directory, swap it in, clean up."""
    _write_atomic(staging / MANIFEST, [json.dumps(manifest).encode()])
    if directory.exists():
        token = staging.name.rsplit(".tmp-", 1)[1]
        os.rename(directory, directory.parent / f".{directory.name}.old-{token}")
    os.rename(staging, directory)
    _fsync_dir(directory.parent)
    for _, _, leftover in _siblings(directory):
        _remove(leftover)


def save_checkpoint(directory: str | Path, arrays: dict[str, DistArray], meta: dict) -> Path:
    """Collective: write ``arrays`` and ``meta`` as a checkpoint into ``directory``.

    Each rank writes its shard; rank 0 writes the manifest once every shard is on disk. A
    checkpoint already in ``directory`` is replaced atomically (see the module docstring).

    Parameters
    ----------
    directory : str or Path
        The checkpoint directory (created, parents too); the same path on every rank.
    arrays : dict of str -> DistArray
        The arrays, on grids over the same ranks.
    meta : dict
        JSON-serialisable data stored as is (config, step, RNG state, ...): rank 0's is kept.
        It comes back as JSON gives it (tuples as lists, keys as strings).

    Returns
    -------
    Path
        ``directory``.

    Raises
    ------
    CheckpointError, TypeError, ValueError
        On every rank together: a file not written; arrays or meta of the wrong kind.
    """
    directory = Path(directory)
    comm, names = _validated(arrays)
    _agree(comm, _attempt(lambda: _check_meta(meta))[1])
    staging = _on_root(comm, lambda: _stage(directory))
    shard = staging / SHARD.format(comm.Get_rank())
    written, error = _attempt(lambda: _write_atomic(shard, _blocks(arrays, names)))
    try:
        _agree(comm, error)
        shards = _comm.allgather(comm, written)
        _on_root(comm, lambda: _commit(directory, staging, _manifest(arrays, names, meta, shards)))
    except Exception:
        if comm.Get_rank() == 0 and ((directory / MANIFEST).is_file() or not (staging / MANIFEST).is_file()):
            _remove(staging)  # unless it holds the only complete copy
        raise
    return directory


# -- loading ------------------------------------------------------------------------------------
def _read_manifest(directory: Path) -> tuple[str, dict]:
    """Rank 0: where the checkpoint is and its checked manifest."""
    source = resolve_checkpoint(directory)
    if source is None:
        raise CheckpointError(f"no complete checkpoint in {directory} ({MANIFEST} missing)")
    path = source / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint manifest {path} is unreadable: {exc}") from None
    try:
        _check_manifest(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint manifest {path} is malformed: {exc!r}") from None
    return str(source), manifest


def _check_manifest(m: dict) -> None:
    """Raise unless the manifest is of this format and version and its parts fit together."""
    if (m["format"], m["version"]) != (FORMAT, VERSION):
        raise ValueError(f"format {m['format']!r} version {m['version']}, expected {FORMAT!r} {VERSION}")
    shards = m["shards"]
    if [s["file"] for s in shards] != [SHARD.format(r) for r in range(m["nranks"])]:
        raise ValueError(f"shards {[s['file'] for s in shards]} for {m['nranks']} ranks")
    if not isinstance(m["meta"], dict):
        raise ValueError(f"meta is a {type(m['meta']).__name__}, not a dict")
    for name, a in m["arrays"].items():
        np.dtype(a["dtype"])
        if len(a["ranks"]) != m["nranks"] or any(len(e["lo"]) != len(a["shape"]) for e in a["ranks"]):
            raise ValueError(f"array {name!r}: blocks {a['ranks']} for {m['nranks']} ranks "
                             f"and shape {a['shape']}")


def _mismatch(manifest: dict, arrays: dict[str, DistArray], source: str,
              partial: bool = False) -> CheckpointError | None:
    """Pure: why ``arrays`` do not match the checkpoint's arrays (names, shapes, dtypes), or
    None. With ``partial``, ``arrays`` may be any subset of the saved ones."""
    saved, given = sorted(manifest["arrays"]), sorted(arrays)
    if (not set(given) <= set(saved)) if partial else saved != given:
        return CheckpointError(
            f"checkpoint {source} holds arrays {saved}, given {given} "
            f"(not in the checkpoint: {sorted(set(given) - set(saved))}; "
            f"not given: {sorted(set(saved) - set(given))})")
    for n in given:
        entry, a = manifest["arrays"][n], arrays[n]
        if tuple(entry["shape"]) != a.shape:
            return CheckpointError(f"array {n!r}: expected shape {a.shape}, found "
                                   f"{tuple(entry['shape'])} in checkpoint {source}")
        if np.dtype(entry["dtype"]) != a.dtype:
            return CheckpointError(f"array {n!r}: expected dtype {a.dtype}, found "
                                   f"{np.dtype(entry['dtype'])} in checkpoint {source}")
    return None


def read_plan(entry: dict, box: Box) -> list[tuple[int, int, Box, Box]]:
    """The reads that fill ``box`` from one saved array's manifest ``entry`` (pure).

    Returns
    -------
    list of (shard, offset, saved, part)
        For every saved block overlapping ``box``: its rank (shard), its byte offset in the
        shard, its box, and the part of it inside ``box``.
    """
    saved = [(r, e["offset"], Box(tuple(e["lo"]), tuple(e["hi"]))) for r, e in enumerate(entry["ranks"])]
    reads = [(r, offset, s, s.intersect(box)) for r, offset, s in saved]
    return [read for read in reads if read[3] is not None]


def _verify_shard(path: Path, expected: dict) -> None:
    """Raise CheckpointError unless shard ``path`` has the manifest's size and sha256."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint shard {path} is missing") from None
    if size != expected["nbytes"]:
        what = "is truncated" if size < expected["nbytes"] else "has the wrong size"
        raise CheckpointError(f"checkpoint shard {path} {what}: expected {expected['nbytes']} "
                              f"bytes, found {size}")
    digest, buf = hashlib.sha256(), bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    if digest.hexdigest() != expected["sha256"]:
        raise CheckpointError(f"checkpoint shard {path} is corrupt: sha256 mismatch "
                              f"(expected {expected['sha256']}, found {digest.hexdigest()})")


def _read_part(f: Any, path: Path, offset: int, saved: Box, part: Box, dtype: np.dtype,
               target: Any, origin: tuple[int, ...]) -> None:
    """Copy ``part`` of the saved block at ``offset`` of open shard ``f`` into ``target``
    (whose element 0 sits at global ``origin``): read the rows of axis 0 it spans, slice."""
    tail = saved.shape[1:]
    if saved.ndim == 0:
        first, window = 0, saved
    else:
        first = part.lo[0] - saved.lo[0]
        window = Box((part.lo[0],) + saved.lo[1:], (part.hi[0],) + saved.hi[1:])
    whole = window == part and part.shape == target.shape and isinstance(target, np.ndarray)
    buf = target if whole else np.empty(window.shape, dtype)  # window.shape = (rows,) + tail
    f.seek(offset + first * math.prod(tail) * dtype.itemsize)
    if f.readinto(memoryview(buf).cast("B")) != buf.nbytes:
        raise CheckpointError(f"checkpoint shard {path} is truncated")
    if not whole:
        target[part.slices(origin)] = backend.like(buf[part.slices(window.lo)], target)


def load_checkpoint(directory: str | Path, arrays: dict[str, DistArray], partial: bool = False) -> dict:
    """Collective: fill ``arrays`` in place from the checkpoint in ``directory``.

    Rank 0 reads the manifest and shares it. The layout may differ from the saved one (rank
    count, grid, split, blocks): each rank reads the parts of saved blocks overlapping its
    own. Each shard read is checked first (size, sha256); the arrays are written only when
    every rank's checks pass.

    Parameters
    ----------
    directory : str or Path
        The checkpoint directory; the same path on every rank.
    arrays : dict of str -> DistArray
        Exactly the checkpoint's arrays, with their global shapes and dtypes.
    partial : bool
        Allow ``arrays`` to be a subset of the checkpoint's (the parameters without the
        optimiser state, for analysis); only those are read.

    Returns
    -------
    dict
        The ``meta`` given to :func:`save_checkpoint` (the same on every rank).

    Raises
    ------
    CheckpointError
        On every rank (a ValueError; messages from another rank start "rank k:"): no complete
        checkpoint; names, shapes or dtypes that differ; a shard missing, truncated or corrupt.
    """
    directory = Path(directory)
    comm, names = _validated(arrays)
    source, manifest = _on_root(comm, lambda: _read_manifest(directory))
    _agree(comm, _mismatch(manifest, arrays, source, partial))
    plans = {n: read_plan(manifest["arrays"][n], arrays[n].box) for n in names}
    used = sorted({r for reads in plans.values() for r, *_ in reads})
    paths = {r: Path(source) / manifest["shards"][r]["file"] for r in used}
    _agree(comm, _attempt(lambda: [_verify_shard(paths[r], manifest["shards"][r]) for r in used])[1])

    def fill() -> None:
        with ExitStack() as stack:
            files = {r: stack.enter_context(open(paths[r], "rb")) for r in used}
            for n in names:
                a = arrays[n]
                for r, offset, saved, part in plans[n]:
                    _read_part(files[r], paths[r], offset, saved, part, a.dtype, a.local, a.box.lo)

    _agree(comm, _attempt(fill)[1])
    return manifest["meta"]


def checkpoint_names(directory: str | Path, comm: _comm.Comm) -> list[str]:
    """Collective over ``comm``: the sorted names of the arrays the complete checkpoint in
    ``directory`` holds (rank 0 reads the manifest; a CheckpointError is raised on every rank)."""
    return sorted(_on_root(comm, lambda: _read_manifest(Path(directory)))[1]["arrays"])


def checkpoint_meta(directory: str | Path, comm: _comm.Comm) -> dict:
    """Collective over ``comm``: the ``meta`` of the complete checkpoint in ``directory``
    (found as :func:`load_checkpoint` finds it). Rank 0
    reads the manifest; a CheckpointError is raised on every rank."""
    source, manifest = _on_root(comm, lambda: _read_manifest(Path(directory)))
    return manifest["meta"]
