"""``cots pack`` at 1-4 ranks: the ranks write every N-th shard, and the shards are the bytes
one rank writes; a shards source on them draws the folder's batches bit for bit; bad input
is refused on every rank with one message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distarray import comm as _comm
from models.cli import main
from models.data import ImageFolder, TarShards
from models.data.index import FileIndex
from models.data.readers import IMAGE_SUFFIXES
from models.data.shards import pack, shard_name
from models.pack import pack_folder

from .data.helpers import write_folder, write_image

pytestmark = pytest.mark.mpi
SIZE = (20, 24)


def shared_folder(tmp_path_factory) -> Path:
    """An image folder (nested, mixed suffixes, a file that is not an image) every rank sees."""
    world = _comm.world()
    root = Path(_comm.broadcast(world, str(tmp_path_factory.mktemp("pack")) if world.Get_rank() == 0 else None))
    if world.Get_rank() == 0:
        write_folder(root / "images")
        for k in range(4):
            write_image(root / "images" / "more" / f"{k}.png", (30 + k, 28), "RGB", seed=10 + k)
    _comm.barrier(world)
    return root


def test_the_ranks_write_the_shards_one_rank_would(tmp_path_factory):
    root = shared_folder(tmp_path_factory)
    record = pack_folder(root / "images", root / "shards", 2, _comm.world())
    assert record["images"] == 7 and record["shards"] == 4 and record["per_shard"] == 2
    assert json.loads((root / "shards" / "pack.json").read_text()) == record
    if _comm.world().Get_rank() == 0:  # one process, every shard, elsewhere
        (root / "serial").mkdir()
        index = FileIndex.scan(root / "images", IMAGE_SUFFIXES)
        assert pack(index, root / "serial", 2, range(4)) == [2, 2, 2, 1]
        for j in range(4):
            assert (root / "shards" / shard_name(j)).read_bytes() == (root / "serial" / shard_name(j)).read_bytes()
    packed, folder = TarShards(root / "shards", SIZE, seed=3), ImageFolder(root / "images", SIZE, seed=3)
    assert packed.batch(1, 12).tobytes() == folder.batch(1, 12).tobytes()
    assert not list((root / "shards").glob("*.part"))


def test_cli_packs_and_refuses_bad_input(tmp_path_factory, capsys):
    root = shared_folder(tmp_path_factory)
    out = root / "cli"
    assert main(["pack", str(root / "images"), "--out", str(out), "--per-shard", "3"]) == 0
    if _comm.world().Get_rank() == 0:
        assert "cots pack: 7 images" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.tar")) == [shard_name(j) for j in range(3)]
    for argv, message in (
            (["pack", str(root / "images"), "--out", str(out)], "expected the output to be a new or empty folder"),
            (["pack", str(root / "missing"), "--out", str(root / "x")], "missing not found"),
            (["pack", str(root / "images"), "--out", str(root / "y"), "--per-shard", "0"], "at least 1 image")):
        assert main(argv) == 2
        if _comm.world().Get_rank() == 0:
            assert message in capsys.readouterr().err
