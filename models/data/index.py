"""File index: the files of a folder tree (relative path, size), listed once and cached.

A training folder may hold millions of files. The index keeps their relative paths in one
byte buffer with offsets (no Python string per file: about ``path length + 16`` bytes per
file), so memory does not grow with anything but the listing, and the images themselves are
decoded on demand by the sources that use it.

The index is cached in a ``.npz`` file with a fingerprint of the folder: the path of every
directory of the tree with its modification time (adding, removing or renaming a file changes
its directory's time). Checking the fingerprint lists the directories but stats no file, so a
cached index is reused at a fraction of the cost of a new listing. A file rewritten in place
under the same name is not noticed: delete the cache (or pass ``--fresh``) after that. No MPI
here: :func:`models.build.build_dataset` lets one rank build it and shares it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

__all__ = ["FileIndex", "cached_table", "folder_fingerprint", "load_table", "save_table"]

INDEX_VERSION = 1


def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry]]:
    """(relative directory, entry) for every entry under ``root``, directories in sorted order."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as entries:
            found = sorted(entries, key=lambda e: e.name)
        for entry in found:
            yield rel, entry
        stack.extend(reversed([f"{rel}/{e.name}" if rel else e.name for e in found
                               if e.is_dir(follow_symlinks=True)]))


def folder_fingerprint(root: str | Path) -> str:
    """A hash of every directory of the tree under ``root`` with its modification time (ns)."""
    root = Path(root)
    digest = hashlib.sha256(f"v{INDEX_VERSION}:{root.resolve()}:{root.stat().st_mtime_ns}".encode())
    for rel, entry in _walk(root):
        if entry.is_dir(follow_symlinks=True):
            digest.update(f"\0{rel}/{entry.name}:{entry.stat().st_mtime_ns}".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class FileIndex:
    """The files under a folder whose names end in one of ``suffixes`` (any case), in order
    of relative path.

    Attributes
    ----------
    root : Path
        The folder.
    names : (total,) uint8
        The relative paths (UTF-8, '/'-separated), one after another.
    offsets : (N + 1,) int64
        File k's path is ``names[offsets[k]:offsets[k + 1]]``.
    sizes : (N,) int64
        Bytes of each file when listed.
    fingerprint : str
        :func:`folder_fingerprint` of the folder when listed.
    """

    root: Path
    names: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    fingerprint: str

    @classmethod
    def scan(cls, root: str | Path, suffixes: Sequence[str]) -> "FileIndex":
        """List the folder (recursively, following links to directories)."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"folder {root} not found (expected a directory)")
        fingerprint = folder_fingerprint(root)
        wanted = tuple(s.lower() for s in suffixes)
        paths, sizes = [], []
        for rel, entry in _walk(root):
            if entry.name.lower().endswith(wanted) and entry.is_file(follow_symlinks=True):
                paths.append((f"{rel}/{entry.name}" if rel else entry.name).encode())
                sizes.append(entry.stat().st_size)
        order = sorted(range(len(paths)), key=paths.__getitem__)
        lengths = np.array([len(paths[k]) for k in order], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        names = np.frombuffer(b"".join(paths[k] for k in order), np.uint8).copy()
        return cls(root, names, offsets, np.array([sizes[k] for k in order], np.int64), fingerprint)

    @classmethod
    def cached(cls, root: str | Path, suffixes: Sequence[str], cache: str | Path | None) -> "FileIndex":
        """The index in ``cache`` when it is of this folder and still current, else a new
        listing (written to ``cache`` atomically when given)."""
        root = Path(root)
        if cache is not None and Path(cache).is_file():
            found = cls.load(cache, root)
            if found is not None and found.fingerprint == folder_fingerprint(root):
                return found
        index = cls.scan(root, suffixes)
        if cache is not None:
            index.save(cache)
        return index

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (.npz), atomically (a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + f".part{os.getpid()}")
        with open(part, "wb") as out:
            np.savez(out, names=self.names, offsets=self.offsets, sizes=self.sizes,
                     meta=np.array([str(self.root.resolve()), self.fingerprint, str(INDEX_VERSION)]))
        os.replace(part, path)

    @classmethod
    def load(cls, path: str | Path, root: str | Path) -> "FileIndex | None":
        """The index stored at ``path`` if it lists ``root`` (None when it lists another folder,
        is of another version, or cannot be read)."""
        try:
            with np.load(path) as stored:
                meta = [str(v) for v in stored["meta"]]
                if meta[0] != str(Path(root).resolve()) or meta[2] != str(INDEX_VERSION):
                    return None
                return cls(Path(root), stored["names"], stored["offsets"], stored["sizes"], meta[1])
        except (OSError, ValueError, KeyError, IndexError):
            return None

    def __len__(self) -> int:
        return len(self.sizes)

    def relative(self, k: int) -> str:
        """File k's path relative to the root."""
        return self.names[self.offsets[k]:self.offsets[k + 1]].tobytes().decode()

    def path(self, k: int) -> Path:
        """File k's path."""
        return self.root / self.relative(k)

    @property
    def nbytes(self) -> int:
        """Memory the index holds."""
        return int(self.names.nbytes + self.offsets.nbytes + self.sizes.nbytes)


def load_table(cache: str | Path | None, key: str) -> dict[str, np.ndarray] | None:
    """The arrays :func:`save_table` kept in ``cache`` (.npz) if they were built from ``key``
    (what they depend on: a fingerprint, options), else None."""
    if cache is not None and Path(cache).is_file():
        try:
            with np.load(cache) as stored:
                if str(stored["key"]) == key:
                    return {name: stored[name] for name in stored.files if name != "key"}
        except (OSError, ValueError, KeyError):
            pass
    return None


def save_table(cache: str | Path, key: str, table: dict[str, np.ndarray]) -> None:
    """Keep ``table`` (named arrays) in ``cache`` (.npz) with its ``key``, atomically."""
    part = Path(cache).with_name(Path(cache).name + f".part{os.getpid()}")
    with open(part, "wb") as out:
        np.savez(out, key=np.array(key), **table)
    os.replace(part, cache)


def cached_table(cache: str | Path | None, key: str,
                 build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``build()`` returns, kept in ``cache`` and reused while ``key`` is the same
    (:func:`load_table`, :func:`save_table`).

    A source's table beside its file index (a video folder's frames, a shard folder's
    members) is built by reading every file once; this keeps it between runs.
    """
    table = load_table(cache, key)
    if table is None:
        table = build()
        if cache is not None:
            save_table(cache, key, table)
    return table
