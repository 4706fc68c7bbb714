"""MPI tests of checkpoints: save and load on the world, a reshard from grid (N, 1) to (1, N)
within one run, and damaged or mismatched checkpoints refused on EVERY rank together.

Run at any size (1-4 ranks): ``mpiexec -n 3 python -m mpi4py -m pytest --with-mpi -m mpi tests``.
Every rank's blocks are compared with the global NumPy array they were cut from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import distarray as da
from distarray import comm as _comm
from distarray.checkpoint import load_checkpoint, save_checkpoint

from .mpi_helpers import SEED, all_alive, explicit_blocks, global_array, grid, rank, size, world

pytestmark = pytest.mark.mpi

META = {"step": 100, "config": {"maps": [8, 16], "lr": 0.05}, "rng": [SEED, 7]}




def globals_() -> dict[str, np.ndarray]:
    return {"w": global_array((11, 7), np.float64, 1), "v": global_array((5, 7, 3, 2), np.float32, 2),
            "b": global_array((13,), np.int32, 3)}


def build(dims, fill=None, blocks_seed=None) -> dict[str, da.DistArray]:
    """The arrays on a grid of ``dims`` (the 1-D one on every rank): cut from the globals, or
    filled with ``fill``; random explicit blocks (zero-extent ones too) with ``blocks_seed``."""
    rng = None if blocks_seed is None else np.random.default_rng([SEED, blocks_seed])
    out = {}
    for n, g in globals_().items():
        gr, split = (grid((size(),)), (0,)) if g.ndim == 1 else (grid(dims), (0, 1) + (None,) * (g.ndim - 2))
        blocks = None if rng is None else explicit_blocks(rng, g.shape, gr.dims, split)
        out[n] = (da.from_global(g, gr, split=split, blocks=blocks) if fill is None
                  else da.full(g.shape, gr, fill, split=split, dtype=g.dtype, blocks=blocks))
    return out


def assert_matches_globals(arrays) -> None:
    for n, g in globals_().items():
        assert arrays[n].local.tobytes() == g[arrays[n].box.slices()].tobytes(), (rank(), n)


def world_dims() -> tuple[int, ...]:
    return da.factor_grid(size(), (11, 7))


def test_save_and_load_on_the_world(shared_dir):
    path = save_checkpoint(shared_dir / "ck", build(world_dims()), META)
    assert sorted(os.listdir(path)) == ["manifest.json"] + [f"shard-{r:05d}.bin" for r in range(size())]
    fresh = build(world_dims(), fill=-7)
    assert load_checkpoint(path, fresh) == META
    assert_matches_globals(fresh)


def test_reshard_from_grid_n_by_1_to_1_by_n(shared_dir):
    path = save_checkpoint(shared_dir / "ck", build((size(), 1)), META)
    for blocks_seed in (None, 5):  # balanced, then uneven with empty blocks
        fresh = build((1, size()), fill=-7, blocks_seed=blocks_seed)
        assert load_checkpoint(path, fresh) == META
        assert_matches_globals(fresh)


def test_overwrite_replaces_the_checkpoint(shared_dir):
    path = shared_dir / "ck"
    save_checkpoint(path, build(world_dims(), fill=1), {"step": 1})
    save_checkpoint(path, build(world_dims()), META)
    all_alive()
    assert sorted(os.listdir(shared_dir)) == ["ck"]
    fresh = build(world_dims(), fill=-7)
    assert load_checkpoint(path, fresh) == META
    assert_matches_globals(fresh)


def damage(path: Path, how: str) -> None:
    """Collective: rank 0 damages ``path``; every rank waits for it."""
    if rank() == 0:
        if how == "flip":
            data = bytearray(path.read_bytes())
            data[7] ^= 0x10
            path.write_bytes(bytes(data))
        else:
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size - 3)
    _comm.barrier(world())


def test_corrupt_shard_of_rank_0_is_refused_on_every_rank(shared_dir):
    path = save_checkpoint(shared_dir / "ck", build(world_dims()), META)
    damage(path / "shard-00000.bin", "flip")
    fresh = build(world_dims(), fill=-7)
    with pytest.raises(ValueError, match=r"shard-00000.bin is corrupt: sha256 mismatch"):
        load_checkpoint(path, fresh)
    assert all((a.local == -7).all() for a in fresh.values())  # nothing written anywhere
    all_alive()


def test_truncated_shard_is_refused_on_every_rank_in_a_reshard(shared_dir):
    path = save_checkpoint(shared_dir / "ck", build((size(), 1)), META)
    last = path / f"shard-{size() - 1:05d}.bin"
    damage(last, "truncate")
    with pytest.raises(ValueError, match=rf"shard-{size() - 1:05d}.bin is truncated: expected \d+ bytes"):
        load_checkpoint(path, build((1, size()), fill=0))
    all_alive()


def test_missing_manifest_and_mismatches_are_refused_on_every_rank(shared_dir):
    with pytest.raises(ValueError, match=r"no complete checkpoint in .*ck \(manifest.json missing\)"):
        load_checkpoint(shared_dir / "ck", build(world_dims(), fill=0))
    path = save_checkpoint(shared_dir / "ck", build(world_dims()), META)
    arrays = build(world_dims(), fill=0)
    arrays["b"] = da.zeros((14,), grid((size(),)), dtype=np.int32)
    with pytest.raises(ValueError, match=r"array 'b': expected shape \(14,\), found \(13,\)"):
        load_checkpoint(path, arrays)
    with pytest.raises(ValueError, match=r"not given: \['b'\]"):
        load_checkpoint(path, {n: a for n, a in arrays.items() if n != "b"})
    all_alive()
