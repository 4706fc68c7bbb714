"""The run's own measurements at 1-4 ranks: weight and gradient norms and the held-out
objective are the same at any rank count (to float64 rounding), come at the configured
steps, and leave the training exactly as it is without them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distarray import comm as _comm
from models.config import parse_config
from models.training.trainer import Trainer

pytestmark = pytest.mark.mpi


def config(heldout_every=2, log_every=3, replicas=1):
    return parse_config({
        "model": {"input": [12, 11, 1], "seed": 4, "dtype": "float64", "stages": [
            {"k": 4, "maps": 3, "pool": 2, "lcn": 3, "eps": 1e-3, "tied": True, "norm": "encoder"},
            {"k": 3, "maps": 2, "pool": 2, "lcn": 0, "lambda": 0.2, "eps": 1e-3}]},
        "train": {"mode": "greedy", "steps": 4, "batch": 4, "lr": 0.01, "log_every": log_every,
                  "heldout_every": heldout_every},
        "data": {"source": "bundled", "face_share": 0.25},
        "run": {"replicas": replicas},
    })


def measured(records):
    return {r["step"]: (r.get("norms"), r.get("heldout")) for r in records if "norms" in r}


def test_norms_and_heldout_match_one_rank_at_the_configured_steps(shared_dir):
    trainer = Trainer(config(), shared_dir)
    twin = Trainer(config(), world=_comm.self_comm())
    ours, theirs = measured(trainer.run()), measured(twin.run())
    assert sorted(ours) == sorted(theirs) == [0, 2, 3, 4, 6, 7]  # log_every 3, heldout_every 2, the last step
    assert [s for s, (_, held) in ours.items() if held] == [0, 2, 4, 6]
    for step, (norms, held) in ours.items():
        twin_norms, twin_held = theirs[step]
        for s, pair in norms.items():
            for kind in ("weight", "grad"):
                assert math.isclose(pair[kind], twin_norms[s][kind], rel_tol=1e-10), (step, s, kind)
        if held:
            assert sorted(held) == (["0"] if step < 4 else ["0", "1"])
            for s in held:
                assert math.isclose(held[s]["loss"], twin_held[s]["loss"], rel_tol=1e-10), (step, s)
    # the last record's weight norm is the norm of the trained stage's parameters, all of them
    params = {n: p.allgather() for n, p in trainer.network.parameters().items()}
    want = math.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for n, a in params.items() if n.startswith("stage1.")))
    assert math.isclose(ours[7][0]["1"]["weight"], want, rel_tol=1e-12)


def test_measuring_leaves_the_training_bit_identical():
    quiet, measured_run = Trainer(config(heldout_every=0, log_every=100)), Trainer(config(heldout_every=1, log_every=1))
    a, b = quiet.run(), measured_run.run()
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    for name, p in quiet.network.parameters().items():
        assert np.array_equal(p.local, measured_run.network.parameters()[name].local), name


@pytest.mark.skipif(_comm.world().Get_size() % 2, reason="replicas need an even number of ranks")
def test_heldout_is_the_mean_over_replicas():
    trainer, twin = Trainer(config(replicas=2)), Trainer(config(), world=_comm.self_comm())
    ours, theirs = measured(trainer.run()), measured(twin.run())
    for step, (_, held) in ours.items():
        for s in held or {}:
            assert math.isclose(held[s]["loss"], theirs[step][1][s]["loss"], rel_tol=1e-10), (step, s)
