"""Tar shards as a training source: the images inside uncompressed ``.tar`` files, read by
seeking to each member's bytes (the layout a cluster filesystem wants for millions of images).

A parallel filesystem (Lustre, GPFS) keeps every file's metadata on a few servers: ten
million small files make listing, opening and stat-ing them the bottleneck, and many sites
cap the number of files a project may hold. Packing the images into shards of a few thousand
(``tar cf shard-00000.tar *.jpg``, or WebDataset's layout) leaves a few thousand files, each
read with one open and many seeks.

The member table is built once per folder of shards: every shard's headers are read with
:mod:`tarfile` (nothing is decompressed or decoded), and each image member (.jpg, .jpeg,
.png, any case, in archive order) is kept as the offset of its bytes and their count: 16
bytes an image, no name. Member k of the folder is then one ``seek`` and one ``read`` in its
shard, decoded from memory, so a sample is still a function of (seed, step, sample index)
alone. The table is cached beside the file index, with the folder's fingerprint and each
shard's size and modification time. A member's name is looked up (its shard's headers read
again) only to name it in a message.

Compressed archives (.tar.gz) cannot be read this way: a member's bytes cannot be reached
without decompressing everything before it.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .folder import StreamingSource
from .index import FileIndex, cached_table
from .readers import DECODE_ERRORS, IMAGE_SUFFIXES, decode_image

__all__ = ["MEMBERS_SUFFIX", "SHARD_SUFFIXES", "TarShards", "join_shards", "list_shards", "member_table", "pack",
           "shard_members", "shard_name", "table_key"]

MEMBERS_SUFFIX = ".members.npz"  # the member table is cached at <file index cache> + this
SHARD_SUFFIXES = (".tar",)


def shard_members(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The image members of the uncompressed tar ``path``, in archive order.

    Returns
    -------
    starts : (members,) int64
        Byte offset of each member's data in the file.
    sizes : (members,) int64
        Bytes of each member.

    Raises
    ------
    ValueError
        The file is not an uncompressed tar archive, or cannot be read (the message names it).
    """
    wanted = tuple(IMAGE_SUFFIXES)
    starts, sizes = [], []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(wanted):
                    starts.append(member.offset_data)
                    sizes.append(member.size)
    except (OSError, tarfile.TarError, EOFError) as err:
        raise ValueError(f"cannot read shard {path} (expected an uncompressed tar archive): {err}") from err
    return np.array(starts, np.int64), np.array(sizes, np.int64)


def list_shards(index: FileIndex, on_error: str,
                shards: Iterable[int]) -> list[tuple[np.ndarray, np.ndarray] | str]:
    """:func:`shard_members` of each of ``shards`` (numbers in ``index``), or, with
    ``on_error="skip"``, the path of one that cannot be read (with "raise" it raises)."""
    found: list[tuple[np.ndarray, np.ndarray] | str] = []
    for v in shards:
        try:
            found.append(shard_members(index.path(v)))
        except ValueError:
            if on_error == "raise":
                raise
            found.append(str(index.path(v)))
    return found


def join_shards(found: Sequence[tuple[np.ndarray, np.ndarray] | str]) -> dict[str, np.ndarray]:
    """The member table of every shard, from :func:`list_shards` of all of them in order.

    Returns
    -------
    dict
        ``starts``, ``sizes`` (members,) int64: where each member's bytes lie in its shard,
        and how many; ``offsets`` (shards + 1,) int64: shard v's members are
        ``starts[offsets[v]:offsets[v + 1]]`` (none for an unreadable one); ``bad`` (str
        array): the unreadable shards.
    """
    empty = np.zeros(0, np.int64)
    parts = [(empty, empty) if isinstance(f, str) else f for f in found]
    counts = [len(starts) for starts, _ in parts]
    return {"starts": np.concatenate([p[0] for p in parts] or [empty]),
            "sizes": np.concatenate([p[1] for p in parts] or [empty]),
            "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "bad": np.array([f for f in found if isinstance(f, str)], dtype=str)}


def member_table(index: FileIndex, on_error: str) -> dict[str, np.ndarray]:
    """Every shard's image members, shard after shard (:func:`join_shards`)."""
    return join_shards(list_shards(index, on_error, range(len(index))))


def table_key(index: FileIndex, on_error: str) -> str:
    """What a cached member table must have been built from: the folder's fingerprint, the
    option, and every shard's size and modification time (a shard appended to in place keeps
    its folder's fingerprint)."""
    stats = [index.path(v).stat() for v in range(len(index))]
    return f"{index.fingerprint}:{on_error}:" + ",".join(f"{st.st_size}/{st.st_mtime_ns}" for st in stats)


def shard_name(j: int) -> str:
    """The file name of shard ``j`` as :func:`pack` writes it."""
    return f"shard-{j:06d}.tar"


def pack(index: FileIndex, out: Path, per_shard: int, shards: Iterable[int]) -> list[int]:
    """Write shards ``shards`` of the indexed files: shard j holds files ``j * per_shard`` up to
    ``(j + 1) * per_shard`` in index order, named by their paths relative to the folder, so a
    shards source on ``out`` lists the images in the folder's order and draws the same
    batches. Each shard is written under a temporary name and renamed when whole; a shard's
    bytes depend on the files alone (whichever process writes it).

    Returns
    -------
    list of int
        The members written to each shard.
    """
    written = []
    for j in shards:
        file = out / shard_name(j)
        part = file.with_name(file.name + ".part")
        members = range(j * per_shard, min(len(index), (j + 1) * per_shard))
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
            for k in members:
                info = tar.gettarinfo(index.path(k), arcname=index.relative(k))
                info.mtime = int(info.mtime)  # whole seconds fit the plain header: no extended one per image
                with open(index.path(k), "rb") as data:
                    tar.addfile(info, data)
        part.replace(file)
        written.append(len(members))
    return written


class TarShards(StreamingSource):
    """The images inside the uncompressed tar archives under a folder (recursively; .tar in
    any case; members .jpg, .jpeg, .png in any case), drawn uniformly over all of them,
    decoded on demand, resized so the shorter side is ``ceil(1.15 * max(size))``, then cropped.

    Parameters
    ----------
    root, size, channels, seed, crop, index, cache
        As for :class:`~models.data.folder.ImageFolder` (the folder holds shards); the member
        table is cached beside ``cache`` (``<cache>.members.npz``).
    on_error : {"raise", "skip"}
        A shard that is not a readable tar, or a member that cannot be decoded, stops the run
        (naming it), or is skipped and counted.
    table : dict, optional
        The member table (:func:`member_table`), when the caller has it: nothing is listed here.
    """

    def __init__(self, root: str | Path, size: Sequence[int], channels: int = 3, seed: int = 0,
                 crop: str = "random", on_error: str = "raise", index: FileIndex | None = None,
                 cache: str | Path | None = None, table: dict[str, np.ndarray] | None = None):
        super().__init__(size, channels, seed, crop, on_error)
        self.root = Path(root)
        self.index = index if index is not None else FileIndex.cached(self.root, SHARD_SUFFIXES, cache)
        if not len(self.index):
            raise ValueError(f"no shards under {self.root}: looked for uncompressed .tar files (any case)")
        if table is None:
            stored = None if cache is None else Path(str(cache) + MEMBERS_SUFFIX)
            table = cached_table(stored, table_key(self.index, on_error), lambda: member_table(self.index, on_error))
        self.starts, self.sizes, self.offsets = table["starts"], table["sizes"], table["offsets"]
        bad = [str(b) for b in table["bad"]]
        self.skipped.update(bad)
        if not len(self.starts):
            raise ValueError(f"no images in the {len(self.index)} shards under {self.root} "
                             f"({len(bad)} unreadable; looked for {', '.join(IMAGE_SUFFIXES)} members)")

    def listing(self) -> dict[str, Any]:
        return {"index": self.index, "table": {"starts": self.starts, "sizes": self.sizes, "offsets": self.offsets,
                                                "bad": np.array(sorted(self.skipped), dtype=str)}}

    def shard_of(self, k: int) -> int:
        """The shard that holds member k of the folder."""
        return int(np.searchsorted(self.offsets, k, side="right")) - 1

    def read(self, k: int) -> np.ndarray:
        path, start, size = self.index.path(self.shard_of(k)), int(self.starts[k]), int(self.sizes[k])
        try:
            with open(path, "rb") as shard:
                shard.seek(start)
                data = shard.read(size)
        except OSError as err:
            raise ValueError(f"cannot read image {self.item_file(k)}: {err}") from err
        if len(data) != size:
            raise ValueError(f"cannot read image {self.item_file(k)}: expected {size} bytes, got {len(data)} "
                             f"(the shard is shorter than when it was listed)")
        try:
            return decode_image(io.BytesIO(data), self.shorter, self.mode)  # (h, w, C)
        except DECODE_ERRORS as err:
            raise ValueError(f"cannot read image {self.item_file(k)}: {err}") from err

    def item_file(self, k: int) -> str:
        """``shard:member`` (the member's name read from the shard's headers; only for messages)."""
        path, start = self.index.path(self.shard_of(k)), int(self.starts[k])
        try:
            with tarfile.open(path, mode="r:") as tar:
                for member in tar:
                    if member.offset_data == start:
                        return f"{path}:{member.name}"
        except (OSError, tarfile.TarError, EOFError):
            pass
        return f"{path}:(member at byte {start})"

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def shards(self) -> int:
        """Number of shards indexed (readable or not)."""
        return len(self.index)

    def describe(self) -> str:
        return (f"tar shards {self.root}: {len(self)} images in {self.shards} shards, {self.crop} crops "
                f"{self._shape_text()}")
