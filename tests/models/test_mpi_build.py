"""A shards source listed by every rank at 1-4 ranks: each reads the headers of every N-th
shard, and the gathered member table is the serial one, bit for bit; the cache is written
once and reused; a bad shard is raised on every rank, or skipped and counted alike."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from distarray import comm as _comm
from models.build import INDEX_FILE, build_dataset
from models.config import parse_config
from models.data.index import FileIndex
from models.data.shards import MEMBERS_SUFFIX, SHARD_SUFFIXES, member_table

from .data.helpers import write_image, write_shards

pytestmark = pytest.mark.mpi


def shared_dir(tmp_path_factory, name: str) -> Path:
    world = _comm.world()
    root = _comm.broadcast(world, str(tmp_path_factory.mktemp(name)) if world.Get_rank() == 0 else None)
    return Path(root)


def shard_config(path: Path, on_error: str = "raise"):
    return parse_config({"model": {"input": [12, 12, 1], "stages": [{"k": 4, "maps": 2, "pool": 2}]},
                         "data": {"source": "shards", "path": str(path), "on_error": on_error}})


def make_shards(root: Path, bad: bool) -> Path:
    """Five shards of three images (seven with a gzip-ed one in the middle when ``bad``)."""
    if _comm.world().Get_rank() == 0:
        for k in range(15):
            write_image(root / "images" / f"{k:02d}.png", (20 + k, 18), "L", seed=k)
        write_shards(root / "images", root / "shards", per_shard=3)
        if bad:
            broken = root / "shards" / "shard-00002a.tar"
            broken.write_bytes(gzip.compress((root / "shards" / "shard-00002.tar").read_bytes()))
    _comm.barrier(_comm.world())
    return root / "shards"


@pytest.mark.parametrize("bad", [False, True])
def test_members_listed_by_every_rank_are_the_serial_table(tmp_path_factory, bad):
    root = shared_dir(tmp_path_factory, "shards")
    shards = make_shards(root, bad)
    run = root / "run"
    source = build_dataset(shard_config(shards, "skip"), _comm.world(), run)
    serial = member_table(FileIndex.scan(shards, SHARD_SUFFIXES), "skip")
    for name in ("starts", "sizes", "offsets"):
        assert getattr(source, name).tobytes() == serial[name].tobytes()
    assert sorted(source.skipped) == sorted(serial["bad"]) == ([str(shards / "shard-00002a.tar")] if bad else [])
    assert len(source) == 15
    cached = Path(str(run / INDEX_FILE) + MEMBERS_SUFFIX)
    _comm.barrier(_comm.world())  # rank 0 writes it after the gather
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    again = build_dataset(shard_config(shards, "skip"), _comm.world(), run)  # read from the cache, not listed
    _comm.barrier(_comm.world())
    assert cached.stat().st_mtime_ns == stamp and again.starts.tobytes() == source.starts.tobytes()
    ours = source.samples(2, range(6))
    assert ours.tobytes() == np.asarray(again.samples(2, range(6))).tobytes()


def test_a_bad_shard_raises_on_every_rank(tmp_path_factory):
    shards = make_shards(shared_dir(tmp_path_factory, "bad"), bad=True)
    with pytest.raises(ValueError, match=r"cannot read shard .*shard-00002a\.tar \(expected an uncompressed tar"):
        build_dataset(shard_config(shards), _comm.world())


def test_a_missing_shard_folder_raises_on_every_rank():
    with pytest.raises(ValueError, match="cots-shards not found"):
        build_dataset(shard_config(Path("/nonexistent/cots-shards")), _comm.world())
