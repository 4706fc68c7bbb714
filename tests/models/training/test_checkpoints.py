"""A run's checkpoints: their names, the newest complete one (a save interrupted after its
shards were written included), pruning, and the arrays a training checkpoint holds."""

from __future__ import annotations

import os

import numpy as np
import pytest

import distarray as da
from distarray.checkpoint import save_checkpoint
from models.training.checkpoints import checkpoint_path, latest_checkpoint, prune_checkpoints


def build() -> tuple[dict[str, da.DistArray], None]:
    """One small array on one rank."""
    return {"w": da.from_global(np.arange(6.0).reshape(2, 3), da.ProcessGrid((1,)))}, None


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    run = tmp_path / "run"
    assert latest_checkpoint(run) is None
    assert checkpoint_path(run, 7) == run / "checkpoints" / "step-00000007"
    arrays, _ = build()
    for step in (2, 10, 9):
        save_checkpoint(checkpoint_path(run, step), arrays, {"step": step})
    checkpoint_path(run, 11).mkdir()  # a directory without manifest: incomplete
    (checkpoint_path(run, 11) / "shard-00000.bin").write_bytes(b"x")
    (run / "checkpoints" / ".step-00000012.tmp-0abc").mkdir()  # a crashed staging directory
    (run / "checkpoints" / "notes.txt").write_text("")
    (run / "checkpoints" / "step-12").mkdir()  # not a checkpoint name
    assert latest_checkpoint(run) == checkpoint_path(run, 10)
    assert latest_checkpoint(str(run)) == checkpoint_path(run, 10)


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    run = tmp_path / "run"
    arrays, _ = build()
    for step in range(1, 6):
        save_checkpoint(checkpoint_path(run, step), arrays, {"step": step})
    checkpoint_path(run, 6).mkdir()  # incomplete: neither counted nor deleted
    assert prune_checkpoints(run, 2) == [checkpoint_path(run, s) for s in (1, 2, 3)]
    assert sorted(os.listdir(run / "checkpoints")) == ["step-00000004", "step-00000005", "step-00000006"]
    assert prune_checkpoints(run, 2) == []
    assert latest_checkpoint(run) == checkpoint_path(run, 5)
    assert prune_checkpoints(run, 0) == [checkpoint_path(run, 4), checkpoint_path(run, 5)]
    assert latest_checkpoint(run) is None
    with pytest.raises(ValueError, match=r"expected keep as an int >= 0, got -1"):
        prune_checkpoints(run, -1)


def test_latest_checkpoint_finds_an_interrupted_swap(tmp_path):
    """The old copy renamed away, the complete new one not yet renamed in: still the newest."""
    run = tmp_path / "run"
    arrays, _ = build()
    save_checkpoint(checkpoint_path(run, 3), arrays, {"step": 3})
    save_checkpoint(tmp_path / "staged", arrays, {"step": 5})
    os.rename(tmp_path / "staged", run / "checkpoints" / ".step-00000005.tmp-0100")
    assert latest_checkpoint(run) == checkpoint_path(run, 5)
    assert prune_checkpoints(run, 1) == [checkpoint_path(run, 3)]
    assert sorted(os.listdir(run / "checkpoints")) == [".step-00000005.tmp-0100"]
