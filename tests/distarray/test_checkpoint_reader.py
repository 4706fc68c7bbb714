"""CheckpointReader, serial: whole arrays, boxes and slabs read back bit for bit; slab sizes;
a corrupt shard and a box outside the array are refused with one clear message."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import Box
from distarray.checkpoint import CheckpointError, save_checkpoint
from distarray.checkpoint_reader import CheckpointReader, slab_rows

META = {"step": 3, "note": "reader"}


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(1)
    wanted = {"w": rng.standard_normal((7, 5, 3)).astype(np.float32), "b": np.arange(11.0),
              "s": np.array(2.5)}
    grid = da.ProcessGrid((1,))
    arrays = {n: da.from_global(g, grid) if g.ndim else da.from_global(g, grid, split=()) for n, g in wanted.items()}
    return save_checkpoint(tmp_path / "ck", arrays, META), wanted


def test_reads_whole_arrays_boxes_and_slabs(saved):
    path, wanted = saved
    reader = CheckpointReader(path)
    assert reader.names == sorted(wanted) and reader.meta == META
    for name, g in wanted.items():
        assert reader.shape(name) == g.shape and reader.dtype(name) == g.dtype
        assert reader.read(name).tobytes() == g.tobytes()
        assert b"".join(s.tobytes() for s in reader.slabs(name, max_bytes=37)) == g.tobytes()
    box = Box((2, 1, 0), (6, 4, 2))
    np.testing.assert_array_equal(reader.read("w", box), wanted["w"][2:6, 1:4, 0:2])


@pytest.mark.parametrize("shape,itemsize,limit,rows", [((10, 4), 4, 16, 1), ((10, 4), 4, 48, 3), ((10, 4), 4, 10**6, 10),
                                                       ((10, 4), 4, 1, 1), ((), 8, 1, 1), ((0, 3), 4, 5, 1)])
def test_slab_rows(shape, itemsize, limit, rows):
    assert slab_rows(shape, itemsize, limit) == rows


def test_refuses_boxes_outside_names_unknown_and_corrupt_shards(saved):
    path, _ = saved
    reader = CheckpointReader(path)
    with pytest.raises(ValueError, match="expected a box inside"):
        reader.read("w", Box((0, 0, 0), (8, 5, 3)))
    with pytest.raises(KeyError, match="holds no array 'x'"):
        reader.shape("x")
    shard = path / "shard-00000.bin"
    data = bytearray(shard.read_bytes())
    data[5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        CheckpointReader(path).read("b")


def test_no_checkpoint_is_one_error(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        CheckpointReader(tmp_path / "nothing")
