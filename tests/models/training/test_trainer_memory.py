"""Greedy training holds one stage's gradients and optimiser state, and still resumes exactly;
joint training by stage holds one stage's gradients at a time."""

from __future__ import annotations

import numpy as np

from distarray import comm
from models.config import parse_config
from models.training.trainer import Trainer


def config(optimizer: str = "adagrad") -> dict:
    return parse_config({
        "model": {"input": [24, 24, 3], "seed": 3, "stages": [
            {"k": 5, "maps": 4, "pool": 3, "lcn": 3}, {"k": 4, "maps": 4, "pool": 2, "lcn": 3}]},
        "train": {"mode": "greedy", "steps": 3, "batch": 4, "optimizer": optimizer, "lr": 0.01,
                  "checkpoint_every": 0},
        "data": {"source": "bundled", "holdout": 30}})


def held(trainer: Trainer) -> tuple[list[int], list[int]]:
    """The stages holding gradient arrays, and those holding optimiser state."""
    grads = [s for s, stage in enumerate(trainer.network.stages)
             if stage.encoder._grad_weight is not None or stage.decoder._grad_weight is not None]
    state = sorted({int(name[5:name.index(".")]) for name in trainer.optimizer.state})
    return grads, state


def weights(trainer: Trainer) -> dict[str, np.ndarray]:
    return {name: p.local.copy() for name, p in trainer.network.parameters().items()}


def test_greedy_holds_only_the_trained_stage(tmp_path):
    trainer = Trainer(config(), world=comm.self_comm())
    assert held(trainer) == ([], [])  # nothing before the first step
    trainer.run(until=2)
    assert held(trainer) == ([0], [0])
    trainer.run(until=5)  # into stage 1: stage 0's are freed
    assert held(trainer) == ([1], [1])


def test_resume_across_the_stage_boundary_is_exact(tmp_path):
    whole = Trainer(config(), world=comm.self_comm())
    whole.run()
    first = Trainer(config(), run_dir=tmp_path, world=comm.self_comm())
    first.run(until=4)  # one step into stage 1; the checkpoint holds stage 1's state only
    resumed = Trainer(config(), run_dir=tmp_path, world=comm.self_comm())
    assert resumed.resume() == 4 and held(resumed)[1] == [1]
    resumed.run()
    for name, w in weights(whole).items():
        np.testing.assert_array_equal(weights(resumed)[name], w, err_msg=name)


def test_joint_by_stage_holds_one_stage_of_gradients_at_a_time():
    cfg = config()
    cfg = parse_config({**cfg.as_dict(), "train": {**cfg.as_dict()["train"], "mode": "joint",
                                                    "joint_update": "by_stage"}})
    trainer = Trainer(cfg, world=comm.self_comm())
    seen = []
    backward = trainer.network.backward

    def spy(stages):  # the stages holding gradients while each stage's gradient is computed
        seen.append((list(stages), held(trainer)[0]))
        backward(stages)

    trainer.network.backward = spy
    trainer.run(until=2)
    assert seen == [([0], []), ([1], [])] * 2  # the stage before was used and freed
    assert held(trainer) == ([], [0, 1])  # state for both (joint), no gradient kept
