"""Checkpoints on one rank (round trip, refusals, overwrite, crashes mid-save), the pure
read plan, and resharding across rank counts for real: ``mpiexec`` jobs of
``checkpoint_job.py`` that save at one rank count and grid and load at another."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import distarray as da
from distarray import backend, comm
from distarray.checkpoint import (
    CheckpointError,
    checkpoint_meta,
    checkpoint_name,
    load_checkpoint,
    read_plan,
    remove_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)

META = {"step": 12, "config": {"lr": 0.05, "maps": [8, 16]}, "rng": [[1, 2], 3], "name": "x"}


def grid2() -> da.ProcessGrid:
    return da.ProcessGrid((1, 1))


def globals_() -> dict[str, tuple[np.ndarray, int, tuple | None]]:
    """name -> (global array, grid ndim, split); floats hold NaN, inf and -0.0."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((5, 7, 3, 2)).astype(np.float32)
    w.flat[:3] = [np.nan, -np.inf, -0.0]
    return {
        "w": (w, 2, (0, 1, None, None)),
        "b": (rng.standard_normal(13), 1, None),
        "v": (rng.integers(-99, 99, (9, 11)).astype(np.int32), 2, (1, 0)),
    }


def build(fill: float | None = None, xp: str = "numpy") -> tuple[dict[str, da.DistArray], dict[str, np.ndarray]]:
    """The arrays (from the globals, or filled with ``fill``) on backend ``xp``, and the globals."""
    grids = {1: da.ProcessGrid((1,)), 2: grid2()}
    arrays, wanted = {}, {}
    for n, (g, nd, split) in globals_().items():
        wanted[n] = g
        arrays[n] = (da.from_global(g, grids[nd], split=split, backend_name=xp) if fill is None
                     else da.full(g.shape, grids[nd], fill, split=split, dtype=g.dtype, backend_name=xp))
    return arrays, wanted


def assert_bit_identical(arrays, wanted) -> None:
    for n, g in wanted.items():
        local = backend.to_host(arrays[n].local)
        assert local.dtype == g.dtype
        assert local.tobytes() == g[arrays[n].box.slices()].tobytes(), n


@pytest.fixture
def saved(tmp_path) -> Path:
    arrays, _ = build()
    return save_checkpoint(tmp_path / "ck", arrays, META)


# -- round trip -----------------------------------------------------------------------------------
@pytest.mark.parametrize("xp", da.available_backends())
def test_round_trip_is_bit_identical_and_returns_meta(tmp_path, xp):
    arrays, wanted = build(xp=xp)
    path = save_checkpoint(tmp_path / "a" / "b" / "ck", arrays, META)  # parents created
    assert path == tmp_path / "a" / "b" / "ck"
    assert sorted(os.listdir(path)) == ["manifest.json", "shard-00000.bin"]
    assert os.listdir(path.parent) == ["ck"]  # no staging leftovers
    fresh, _ = build(fill=-7, xp=xp)
    assert load_checkpoint(path, fresh) == META
    assert_bit_identical(fresh, wanted)


def test_manifest_describes_layouts_offsets_and_shards(saved):
    m = json.loads((saved / "manifest.json").read_text())
    assert (m["format"], m["version"], m["nranks"], m["grid"], m["meta"]) == ("cots-checkpoint", 1, 1, None, META)
    assert list(m["arrays"]) == ["b", "v", "w"]
    w = m["arrays"]["w"]
    assert (w["shape"], w["dtype"], w["grid"], w["split"]) == ([5, 7, 3, 2], "<f4", [1, 1], [0, 1, None, None])
    assert w["blocks"] == [[5], [7], [3], [2]]
    sizes = {"b": 13 * 8, "v": 9 * 11 * 4, "w": 5 * 7 * 3 * 2 * 4}
    assert m["arrays"]["v"]["ranks"] == [{"lo": [0, 0], "hi": [9, 11], "offset": 13 * 8, "nbytes": sizes["v"]}]
    assert w["ranks"][0]["offset"] == sizes["b"] + sizes["v"]  # sorted-name order
    data = (saved / "shard-00000.bin").read_bytes()
    assert m["shards"] == [{"file": "shard-00000.bin", "nbytes": sum(sizes.values()),
                            "sha256": hashlib.sha256(data).hexdigest()}]
    _, wanted = build()
    assert data[w["ranks"][0]["offset"]:] == wanted["w"].tobytes()


def test_empty_blocks_and_one_element_arrays(tmp_path):
    arrays = {"e": da.zeros((0, 4), grid2(), dtype=np.float64), "one": da.full((1,), da.ProcessGrid((1,)), 3.0)}
    save_checkpoint(tmp_path / "ck", arrays, {})
    fresh = {"e": da.zeros((0, 4), grid2(), dtype=np.float64), "one": da.zeros((1,), da.ProcessGrid((1,)))}
    assert load_checkpoint(tmp_path / "ck", fresh) == {}
    assert fresh["one"].local.tolist() == [3.0]


# -- refusals ---------------------------------------------------------------------------------------
def test_truncated_shard_is_refused(saved):
    shard = saved / "shard-00000.bin"
    size = shard.stat().st_size
    with open(shard, "r+b") as f:
        f.truncate(size - 5)
    fresh, _ = build(fill=-7)
    with pytest.raises(CheckpointError, match=rf"checkpoint shard {shard} is truncated: "
                                              rf"expected {size} bytes, found {size - 5}"):
        load_checkpoint(saved, fresh)
    assert all((a.local == -7).all() for a in fresh.values())  # checked before any write


def test_flipped_byte_is_refused(saved):
    shard = saved / "shard-00000.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"checkpoint shard {shard} is corrupt: sha256 mismatch"):
        load_checkpoint(saved, build(fill=0)[0])


def test_missing_shard_and_missing_manifest_are_refused(saved, tmp_path):
    (saved / "shard-00000.bin").unlink()
    with pytest.raises(CheckpointError, match=r"shard-00000.bin is missing"):
        load_checkpoint(saved, build(fill=0)[0])
    (saved / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=rf"no complete checkpoint in {saved} \(manifest.json missing\)"):
        load_checkpoint(saved, build(fill=0)[0])
    with pytest.raises(CheckpointError, match=r"manifest.json missing"):
        load_checkpoint(tmp_path / "nowhere", build(fill=0)[0])


def test_malformed_manifest_is_refused(saved):
    (saved / "manifest.json").write_text('{"format": "cots-checkpoint", "version": 99}')
    with pytest.raises(CheckpointError, match=r"manifest.json is malformed: .*version 99"):
        load_checkpoint(saved, build(fill=0)[0])
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"manifest.json is unreadable"):
        load_checkpoint(saved, build(fill=0)[0])


def test_names_shapes_and_dtypes_must_match(saved):
    arrays, _ = build(fill=0)
    g = arrays["b"].grid
    with pytest.raises(ValueError, match=r"holds arrays \['b', 'v', 'w'\], given \['b', 'v'\] "
                                         r"\(not in the checkpoint: \[\]; not given: \['w'\]\)"):
        load_checkpoint(saved, {n: arrays[n] for n in ("b", "v")})
    with pytest.raises(ValueError, match=r"not in the checkpoint: \['z'\]; not given: \[\]"):
        load_checkpoint(saved, {**arrays, "z": da.zeros((2,), g)})
    with pytest.raises(ValueError, match=r"array 'b': expected shape \(14,\), found \(13,\) in checkpoint"):
        load_checkpoint(saved, {**arrays, "b": da.zeros((14,), g, dtype=np.float64)})
    with pytest.raises(ValueError, match=r"array 'b': expected dtype float32, found float64 in checkpoint"):
        load_checkpoint(saved, {**arrays, "b": da.zeros((13,), g, dtype=np.float32)})


def test_bad_arguments_are_refused(tmp_path):
    arrays, _ = build()
    with pytest.raises(TypeError, match=r"expected meta as a dict, got list"):
        save_checkpoint(tmp_path / "ck", arrays, [1])
    with pytest.raises(TypeError, match=r"Object of type object is not JSON serializable"):
        save_checkpoint(tmp_path / "ck", arrays, {"f": object()})
    with pytest.raises(TypeError, match=r"expected a non-empty dict of name -> DistArray"):
        save_checkpoint(tmp_path / "ck", {}, {})
    with pytest.raises(TypeError, match=r"expected str -> DistArray, got 'x' -> ndarray"):
        save_checkpoint(tmp_path / "ck", {"x": np.zeros(3)}, {})
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match=r"exists and is not a directory"):
        save_checkpoint(tmp_path / "file", arrays, {})
    assert not (tmp_path / "ck").exists()


def test_a_failed_save_keeps_the_old_checkpoint_and_leaves_nothing(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck", build()[0], META)

    def broken(arrays, names):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("distarray.checkpoint._blocks", broken)
    with pytest.raises(CheckpointError, match=r"checkpoint I/O failed: \[Errno 28\] No space left"):
        save_checkpoint(path, build(fill=0)[0], {"step": 13})
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    fresh, wanted = build(fill=-7)
    assert load_checkpoint(path, fresh) == META
    assert_bit_identical(fresh, wanted)


# -- overwrite and crashes ----------------------------------------------------------------------------
def test_overwrite_replaces_the_checkpoint_and_leaves_no_leftovers(tmp_path):
    arrays, wanted = build()
    path = save_checkpoint(tmp_path / "ck", build(fill=1)[0], {"step": 1})
    (path / ".shard-00000.bin.tmp").write_bytes(b"stray")  # a crashed writer's temporary
    save_checkpoint(path, arrays, META)
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    assert sorted(os.listdir(path)) == ["manifest.json", "shard-00000.bin"]
    fresh, _ = build(fill=0)
    assert load_checkpoint(path, fresh) == META
    assert_bit_identical(fresh, wanted)


def test_crash_before_the_swap_keeps_the_old_checkpoint(tmp_path):
    """A save that died while writing its staging directory: the old checkpoint loads."""
    old = save_checkpoint(tmp_path / "run" / "step-3", build()[0], {"step": 3})
    stray = old.parent / ".step-3.tmp-00ff"
    stray.mkdir()
    (stray / "shard-00000.bin").write_bytes(b"partial")
    assert resolve_checkpoint(old) == old and checkpoint_name(stray.name) == "step-3"
    assert load_checkpoint(old, build(fill=0)[0]) == {"step": 3}
    save_checkpoint(old, build()[0], {"step": 3, "again": True})  # the next save cleans up
    assert sorted(os.listdir(old.parent)) == ["step-3"]


def test_crash_between_the_renames_reads_the_new_checkpoint(tmp_path):
    """The old checkpoint renamed away and the complete new one not yet renamed in."""
    path = tmp_path / "run" / "step-4"
    save_checkpoint(path, build(fill=1)[0], {"step": 4, "version": "old"})
    os.rename(path, path.parent / ".step-4.old-0100")
    arrays, wanted = build()
    save_checkpoint(tmp_path / "elsewhere", arrays, {"step": 4, "version": "new"})
    os.rename(tmp_path / "elsewhere", path.parent / ".step-4.tmp-0100")
    assert not path.exists()
    assert resolve_checkpoint(path) == path.parent / ".step-4.tmp-0100"
    assert checkpoint_meta(path, comm.self_comm()) == {"step": 4, "version": "new"}
    fresh, _ = build(fill=0)
    assert load_checkpoint(path, fresh) == {"step": 4, "version": "new"}
    assert_bit_identical(fresh, wanted)
    save_checkpoint(path, arrays, {"step": 4})
    assert sorted(os.listdir(path.parent)) == ["step-4"]


def test_resolve_name_and_remove(tmp_path):
    assert resolve_checkpoint(tmp_path / "none") is None
    assert [checkpoint_name(n) for n in (".a.tmp-0f", ".a.old-1", "a", ".a.tmp-x", "notes.txt")] == \
        ["a", "a", "a", ".a.tmp-x", "notes.txt"]
    path = save_checkpoint(tmp_path / "ck", build()[0], META)
    save_checkpoint(tmp_path / "other", build()[0], META)
    os.rename(save_checkpoint(tmp_path / "x", build()[0], META), tmp_path / ".ck.old-0a")
    remove_checkpoint(path)
    assert sorted(os.listdir(tmp_path)) == ["other"]
    remove_checkpoint(path)  # nothing left: no error
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        checkpoint_meta(path, comm.self_comm())


# -- the read plan (pure) ------------------------------------------------------------------------------
def entry(layout: da.Layout) -> dict:
    """A manifest entry for ``layout`` (offsets as if each rank's shard held only this array)."""
    return {"ranks": [{"lo": list(layout.box(r).lo), "hi": list(layout.box(r).hi), "offset": 0}
                      for r in range(layout.nranks)]}


def test_read_plan_same_layout_reads_only_the_own_block():
    layout = da.Layout.create((11, 7), (3, 1))
    for r in range(3):
        box = layout.box(r)
        assert read_plan(entry(layout), box) == [(r, 0, box, box)]


@pytest.mark.parametrize("saved_dims, dims", [((3, 1), (2, 2)), ((2, 2), (1, 3)), ((4, 1), (1, 1))])
def test_read_plan_covers_every_block_exactly(saved_dims, dims):
    before = da.Layout.create((11, 7), saved_dims)
    after = da.Layout.create((11, 7), dims, blocks=[None, (2, 5, 0)] if dims == (1, 3) else None)  # uneven, empty
    for r in range(after.nranks):
        box = after.box(r)
        cover = np.zeros(box.shape, int)
        for shard, _, saved, part in read_plan(entry(before), box):
            assert saved == before.box(shard) and part == saved.intersect(box)
            cover[part.slices(box.lo)] += 1
        assert (cover == 1).all()


# -- resharding across rank counts: real mpiexec jobs ----------------------------------------------------
MPIEXEC = Path(sys.executable).parent / "mpiexec"
JOB = Path(__file__).with_name("checkpoint_job.py")
_JOB_PREFIXES = ("PMI_", "PMIX_", "HYDI_", "HYDRA_", "MPI_LOCAL", "OMPI_")  # of an enclosing job


def job(n: int, mode: str, directory: Path, dims: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_JOB_PREFIXES)}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([str(MPIEXEC), "-n", str(n), sys.executable, "-m", "mpi4py", str(JOB), mode,
                           str(directory), dims], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def saves(tmp_path_factory):
    """Checkpoints saved by real jobs, one per (ranks, dims), made when first asked for."""
    root, made = tmp_path_factory.mktemp("saves"), {}

    def get(n: int, dims: str) -> Path:
        if (n, dims) not in made:
            path = root / f"n{n}-{dims.replace(',', 'x')}"
            done = job(n, "save", path, dims)
            assert done.returncode == 0, done.stdout + done.stderr
            made[n, dims] = path
        return made[n, dims]

    return get


@pytest.mark.parametrize("saved_as, loaded_as", [
    ((2, "2,1"), (3, "3,1")),
    ((3, "3,1"), (1, "1,1")),
    ((4, "2,2"), (2, "1,2")),
    ((4, "2,2"), (3, "1,3")),
], ids=["2to3", "3to1", "4to2-2x2to1x2", "2x2to1x3"])
def test_reshard_across_rank_counts_and_grids(saves, saved_as, loaded_as):
    path = saves(*saved_as)
    assert len(json.loads((path / "manifest.json").read_text())["shards"]) == saved_as[0]
    done = job(loaded_as[0], "load", path, loaded_as[1])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("loaded ok") == loaded_as[0]


def test_truncated_shard_fails_a_reshard_on_every_rank(saves, tmp_path):
    path = shutil.copytree(saves(2, "2,1"), tmp_path / "ck")
    shard = path / "shard-00001.bin"
    size = shard.stat().st_size
    with open(shard, "r+b") as f:
        f.truncate(size - 8)
    done = job(3, "load", path, "3,1")
    assert done.returncode != 0
    assert f"checkpoint shard {shard} is truncated: expected {size} bytes, found {size - 8}" in done.stderr
    assert "loaded ok" not in done.stdout
