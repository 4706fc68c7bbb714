"""`cots export`, serial: the safetensors header; slab-by-slab streaming gives the same file
as one slab; the CLI writes both formats and refuses a run without checkpoints, a corrupt
shard and a bad --out with one line."""

from __future__ import annotations

import json
import struct
import subprocess

import numpy as np
import pytest

from distarray import comm
from models import export
from models.config import parse_config
from models.export import export_checkpoint, safetensors_header
from models.training.trainer import Trainer

from .training.cli_env import BIN, ENV, ROOT


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    cfg = parse_config({
        "model": {"input": [12, 11, 1], "seed": 1, "dtype": "float64", "stages": [
            {"k": 4, "maps": 3, "pool": 2, "lcn": 3, "eps": 1e-3}]},
        "train": {"steps": 2, "batch": 4, "lr": 0.01}, "data": {"face_share": 0.25}})
    trainer = Trainer(cfg, path, world=comm.self_comm())
    trainer.run()
    return path, {n: p.allgather() for n, p in trainer.network.parameters().items()}


def test_safetensors_header_is_padded_json_with_back_to_back_offsets():
    head = safetensors_header([("a", "F32", (2, 3), 24), ("b", "F64", (), 8)], {"config": "x"})
    (n,) = struct.unpack("<Q", head[:8])
    assert n == len(head) - 8 and n % 8 == 0
    header = json.loads(head[8:])
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert header["b"]["data_offsets"] == [24, 32] and header["__metadata__"] == {"config": "x"}


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_small_slabs_give_the_same_file(run, tmp_path, monkeypatch, fmt):
    path, wanted = run
    checkpoint = path / "checkpoints" / "step-00000002"
    whole = export_checkpoint(checkpoint, tmp_path / f"whole.{fmt}", fmt).read_bytes()
    monkeypatch.setattr(export, "SLAB_BYTES", 40)  # a few rows per slab
    assert export_checkpoint(checkpoint, tmp_path / f"slabs.{fmt}", fmt).read_bytes() == whole


def test_unknown_format_and_no_parameters(run, tmp_path):
    path, _ = run
    with pytest.raises(ValueError, match="expected a format in"):
        export_checkpoint(path / "checkpoints" / "step-00000002", tmp_path / "x", "hdf5")
    import distarray as da
    from distarray.checkpoint import save_checkpoint

    bare = save_checkpoint(tmp_path / "bare", {"opt/x": da.zeros((3,), da.ProcessGrid((1,)))}, {})
    with pytest.raises(ValueError, match="holds no parameters"):
        export_checkpoint(bare, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def cots_export(*args):
    return subprocess.run([str(BIN / "cots"), "export", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=ENV, cwd=ROOT)


def test_cli_writes_both_formats(run, tmp_path):
    path, wanted = run
    done = cots_export(path, "--out", tmp_path / "p.npz")
    assert done.returncode == 0, done.stderr
    assert "stage0.encoder.weight" in done.stdout
    with np.load(tmp_path / "p.npz") as data:
        for n, g in wanted.items():
            np.testing.assert_array_equal(data[n], g)
    done = cots_export(path, "--format", "safetensors", "--quiet")
    assert done.returncode == 0 and done.stdout == "", done.stderr
    from safetensors.numpy import load_file

    got = load_file(str(path / "parameters.safetensors"))
    assert sorted(got) == sorted(wanted)


def test_cli_refuses_with_one_line(run, tmp_path):
    path, _ = run
    for args, status, message in [((tmp_path,), 2, "no complete checkpoint"),
                                  ((path, "--out", tmp_path / "missing" / "p.npz"), 2, "expected --out to be a file")]:
        done = cots_export(*args)
        assert done.returncode == status, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(path / "checkpoints", broken / "checkpoints")
    shard = broken / "checkpoints" / "step-00000002" / "shard-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    done = cots_export(broken)
    assert done.returncode == 1 and "is truncated" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (broken / "parameters.npz").exists()
