"""``cots pack``: an image folder packed into uncompressed tar shards, the ranks writing every
N-th shard.

Shard j holds the folder's files ``j * per_shard`` to ``(j + 1) * per_shard`` in the order a
folder source lists them (:class:`~models.data.index.FileIndex`: relative path), named by
those relative paths, so ``data.source = "shards"`` on the output lists the same images in
the same order and draws the same batches, bit for bit, as ``data.source = "folder"`` on the
input (docs/data.md, "Tar shards"). A shard's bytes depend on the files alone, whichever rank
writes it; each is written under a temporary name and renamed when whole. ``OUT/pack.json``
records the folder, the counts and the shard size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from distarray import comm

from .data.index import FileIndex
from .data.readers import IMAGE_SUFFIXES
from .data.shards import pack

__all__ = ["pack_folder"]


def pack_folder(folder: str | Path, out: str | Path, per_shard: int, world: Any) -> dict[str, Any]:
    """Collective: pack ``folder``'s images into shards of ``per_shard`` under ``out`` (a new
    or empty folder); returns what ``OUT/pack.json`` records.

    Raises
    ------
    ValueError
        On every rank together: ``out`` is a file or a folder that is not empty, ``folder`` is
        missing or holds no image, ``per_shard`` < 1, or a shard cannot be written.
    """
    out, index, error = Path(out), None, None
    if world.Get_rank() == 0:
        try:
            if per_shard < 1:
                raise ValueError(f"expected at least 1 image per shard, got {per_shard}")
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise ValueError(f"expected the output to be a new or empty folder, got {out} (a file, or a folder "
                                 f"that holds something)")
            index = FileIndex.scan(folder, IMAGE_SUFFIXES)
            if not len(index):
                raise ValueError(f"no images under {folder}: looked for {', '.join(IMAGE_SUFFIXES)} files (any case)")
            out.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as exc:
            error = ValueError(str(exc))
    comm.agree(world, error)
    index = comm.broadcast(world, index)
    count, written = math.ceil(len(index) / per_shard), []
    try:
        written = pack(index, out, per_shard, range(world.Get_rank(), count, world.Get_size()))
    except OSError as exc:
        error = ValueError(f"cannot write the shards under {out}: {exc}")
    comm.agree(world, error)
    images = sum(sum(part) for part in comm.allgather(world, written))
    record = {"folder": str(Path(folder).resolve()), "images": images, "shards": count, "per_shard": per_shard}
    if world.Get_rank() == 0:
        (out / "pack.json").write_text(json.dumps(record, indent=1) + "\n")
    comm.barrier(world)
    return record
