"""The training input at 1-4 ranks: each rank draws its share of the samples, one plan moves
them to the first stage's layout; the result is the serial batch bit for bit, at any grid,
with replicas, with or without prefetching. Folder and shard sources are listed once and shared."""

from __future__ import annotations

import numpy as np
import pytest

from distarray import comm as _comm
from models.build import INDEX_FILE, build_dataset
from models.config import parse_config
from models.training.trainer import Trainer

from ...distarray.mpi_helpers import size
from ..data.helpers import write_folder, write_shards, write_truncated_jpeg

pytestmark = pytest.mark.mpi


def config(grid_dims="auto", replicas=1, batch=6, data=None, whiten=3):
    return parse_config({
        "model": {"input": [14, 13, 1], "seed": 4, "dtype": "float32", "input_lcn": 3, "whiten": whiten,
                  "stages": [{"k": 4, "maps": 2, "pool": 2, "lcn": 3, "eps": 1e-3}]},
        "train": {"steps": 3, "batch": batch, "lr": 0.01},
        "data": data or {"source": "bundled", "face_share": 0.25},
        "run": {"replicas": replicas, "grid": grid_dims},
    })


GRIDS = {"auto": lambda n: "auto", "rows": lambda n: [n, 1], "cols": lambda n: [1, n]}


@pytest.mark.parametrize("grid_name", GRIDS)
@pytest.mark.parametrize("batch", [6, 3])
def test_input_is_the_serial_batch_bit_for_bit(grid_name, batch):
    """batch 3 at 4 ranks: a rank with no sample to draw still receives its block."""
    trainer = Trainer(config(GRIDS[grid_name](size()), batch=batch))
    twin = Trainer(config(batch=batch), world=_comm.self_comm(), prefetch=False)
    for step in (0, 5, 6):
        ours = trainer.input_batch(step, step + 1).allgather()  # prefetching the next
        want = twin.network.input_array(twin.dataset.batch(step, batch)).local  # the old path: the whole batch
        assert ours.tobytes() == want.tobytes() == twin.input_batch(step).local.tobytes()
    trainer.feed.close()


def test_each_replica_gets_its_share():
    if size() % 2:
        pytest.skip("two replicas need an even number of ranks")
    trainer = Trainer(config(replicas=2, batch=8))
    twin = Trainer(config(batch=8), world=_comm.self_comm())
    whole = twin.input_batch(3).local  # (H, W, C, 8)
    ours = trainer.input_batch(3).allgather()  # this replica's share, (H, W, C, 4)
    assert ours.tobytes() == np.ascontiguousarray(whole[..., 4 * trainer.replica:4 * trainer.replica + 4]).tobytes()


def test_a_prefetched_batch_for_another_step_is_not_used():
    trainer = Trainer(config())
    trainer.input_batch(0, 1)  # batch 1 prepared ahead ...
    got = trainer.input_batch(2).allgather()  # ... but batch 2 asked for
    twin = Trainer(config(), world=_comm.self_comm(), prefetch=False)
    assert got.tobytes() == twin.input_batch(2).local.tobytes()
    trainer.feed.close()


@pytest.mark.parametrize("source", ["folder", "shards"])
def test_a_folder_is_listed_once_and_shared(tmp_path_factory, source):
    from pathlib import Path
    root = tmp_path_factory.mktemp("shared") if _comm.world().Get_rank() == 0 else None
    root = _comm.broadcast(_comm.world(), None if root is None else str(root))
    run = f"{root}/run"
    images = f"{root}/images"
    if _comm.world().Get_rank() == 0:
        write_folder(Path(images))
        write_shards(Path(images), Path(root, "shards"), per_shard=2)
    _comm.barrier(_comm.world())
    cfg = config(data={"source": source, "path": images if source == "folder" else f"{root}/shards"}, whiten=0)
    dataset = build_dataset(cfg, _comm.world(), run)
    assert len(dataset) == 3 and dataset.index.fingerprint
    assert Path(run, INDEX_FILE).is_file()
    trainer = Trainer(cfg, run_dir=None)
    twin = Trainer(cfg, world=_comm.self_comm())
    assert trainer.input_batch(1).allgather().tobytes() == twin.input_batch(1).local.tobytes()
    if source == "shards":  # the same images, packed in the same order: the same batch as the folder
        folder = Trainer(config(data={"source": "folder", "path": images}, whiten=0), world=_comm.self_comm())
        assert folder.input_batch(1).local.tobytes() == twin.input_batch(1).local.tobytes()


def test_a_missing_folder_raises_on_every_rank(tmp_path):
    cfg = config(data={"source": "folder", "path": "/nonexistent/cots-images"}, whiten=0)
    with pytest.raises(ValueError, match="cots-images not found"):
        build_dataset(cfg, _comm.world())


@pytest.mark.parametrize("source", ["folder", "shards"])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_truncated_jpeg_raise_stops_every_rank_skip_counts_it(tmp_path_factory, on_error, source):
    from pathlib import Path

    from models.data import DataError
    from ..data.helpers import write_image
    world = _comm.world()
    root = _comm.broadcast(world, str(tmp_path_factory.mktemp("bad")) if world.Get_rank() == 0 else None)
    images = Path(root, "images")
    if world.Get_rank() == 0:
        for k in range(3):
            write_image(images / f"good{k}.jpg", (40, 40), "L", "JPEG", seed=k)
        write_truncated_jpeg(images / "cut.jpg")
        write_shards(images, Path(root, "shards"), per_shard=3)
    _comm.barrier(world)
    path, bad = (images, images / "cut.jpg") if source == "folder" else (Path(root, "shards"), None)
    cfg = config(data={"source": source, "path": str(path), "on_error": on_error}, whiten=0, batch=8)
    trainer = Trainer(cfg)
    if on_error == "raise":  # some rank draws cut.jpg in 3 steps of 8 samples; all ranks stop together
        with pytest.raises(DataError, match=r"cannot draw the batch of step \d+: .*cut\.jpg"):
            trainer.run()
        return
    records = trainer.run()
    named = str(bad) if bad is not None else f"{Path(root, 'shards', 'shard-00000.tar')}:cut.jpg"
    assert trainer.feed.skipped() == [named]
    assert records[-1]["skipped_files"] == 1
    twin = Trainer(cfg, world=_comm.self_comm())
    assert trainer.input_batch(2).allgather().tobytes() == twin.input_batch(2).local.tobytes()
