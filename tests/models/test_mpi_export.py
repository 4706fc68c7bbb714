"""`cots export` at 1-4 ranks: a checkpoint written by a training job on this job's grid
exports, from rank 0 alone, to npz and safetensors files whose arrays are the global
parameters bit for bit, with the run's configuration beside them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distarray import comm
from models.config import parse_config, to_toml
from models.export import export_checkpoint
from models.training.trainer import Trainer

pytestmark = pytest.mark.mpi


def config():
    return parse_config({
        "model": {"input": [12, 11, 1], "seed": 4, "dtype": "float32", "whiten": 3, "stages": [
            {"k": 4, "maps": 3, "pool": 2, "lcn": 3, "eps": 1e-3, "tied": True, "norm": "encoder"},
            {"k": 3, "maps": 2, "pool": 2, "lcn": 0, "eps": 1e-3}]},
        "train": {"mode": "joint", "steps": 2, "batch": 4, "optimizer": "adagrad", "lr": 0.01},
        "data": {"source": "bundled", "face_share": 0.25},
    })


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_export_is_the_global_parameters_bit_for_bit(shared_dir, fmt):
    cfg = config()
    trainer = Trainer(cfg, shared_dir)
    trainer.run()
    wanted = {n: p.allgather() for n, p in trainer.network.parameters().items()}
    path = shared_dir / "checkpoints" / "step-00000002"
    if comm.world().Get_rank() == 0:
        out = export_checkpoint(path, shared_dir / f"p.{fmt}", fmt)
        if fmt == "npz":
            with np.load(out, allow_pickle=False) as data:
                got = {n: data[n] for n in data.files}
            texts = {k: str(got.pop(k)) for k in ("config", "meta")}
        else:
            from safetensors import safe_open

            with safe_open(str(out), framework="numpy") as f:
                got = {n: f.get_tensor(n) for n in f.keys()}
                texts = f.metadata()
        assert sorted(got) == sorted(wanted)
        for n, g in wanted.items():
            assert got[n].dtype == g.dtype and got[n].shape == g.shape, n
            assert got[n].tobytes() == g.tobytes(), n
        assert texts["config"] == to_toml(cfg.as_dict())
        meta = json.loads(texts["meta"])
        assert meta["step"] == 2 and meta["preprocess"] is not None
    comm.barrier(comm.world())
