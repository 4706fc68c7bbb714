"""`cots train` end to end under mpiexec: the demo's loss falls and it leaves its outputs;
a run stopped at 2 ranks and resumed at 3 reaches the weights of an uninterrupted run at 3;
a truncated shard is refused; bad configurations exit with status 2 and one message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from distarray import comm
from models.config import load_config
from models.training.trainer import Trainer

from .cli_env import BIN, ENV, ROOT


TINY = """
[model]
input = [14, 13, 1]
dtype = "float64"
seed = 2
[[model.stages]]
k = 4
maps = 3
pool = 2
lcn = 3
eps = 0.001
[[model.stages]]
k = 3
maps = 2
pool = 2
lcn = 0
eps = 0.001
[train]
mode = "greedy"
steps = 4
batch = 6
lr = 0.01
schedule = "cosine"
[data]
face_share = 0.3
"""


def cots(ranks: int, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "mpiexec"), "-n", str(ranks), str(BIN / "cots"), "train", *args, "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def final_weights(config: Path, run: Path) -> dict[str, np.ndarray]:
    """The newest checkpoint of ``run`` loaded on this process alone (a reshard to 1 rank)."""
    trainer = Trainer(load_config(config), world=comm.self_comm())
    trainer.load(sorted((run / "checkpoints").glob("step-*"))[-1])
    arrays = {n: p.local.copy() for n, p in trainer.network.parameters().items()}
    arrays.update({n: s.local.copy() for n, s in trainer.optimizer.state.items()})
    return arrays


def test_demo_trains_and_its_loss_falls(tmp_path):
    run = tmp_path / "demo"
    done = cots(2, "configs/demo.toml", "--out", str(run), "--set", "train.steps=40",
                "--set", "train.checkpoint_every=20")
    assert "finished" in done.stdout and str(run) in done.stdout
    for name in ("config.toml", "metrics.jsonl", "loss.png"):
        assert (run / name).stat().st_size > 0, name
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in sorted((run / "checkpoints").glob("step-*"))] == ["step-00000060", "step-00000080"]
    assert load_config(run / "config.toml").train.steps == 40  # the effective config
    records = metrics(run)
    assert [r["step"] for r in records] == list(range(80))
    for stage, steps in (("0", records[:40]), ("1", records[40:])):
        loss = [r["stages"][stage]["loss"] for r in steps]
        assert np.mean(loss[-5:]) < 0.9 * np.mean(loss[:5]), (stage, loss)  # tied, unit-norm: no collapse to 0
        assert all(set(r["seconds"]) == {"step", "data", "comm", "compute"} for r in steps)


def test_stop_at_two_ranks_resume_at_three(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    split, straight = tmp_path / "split", tmp_path / "straight"
    cots(2, str(config), "--out", str(split), "--until", "3")
    assert [p.name for p in (split / "checkpoints").glob("step-*")] == ["step-00000003"]
    for name in ("loss.png", "curves.png"):  # drawn at every checkpoint, not only at the last step
        assert (split / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    done = cots(3, str(config), "--out", str(split), "--resume")
    assert "resuming" in done.stdout and "at step 3" in done.stdout
    cots(3, str(config), "--out", str(straight))
    assert [r["step"] for r in metrics(split)] == list(range(8))
    ours, theirs = final_weights(config, split), final_weights(config, straight)
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-10, atol=1e-13, err_msg=name)
    losses = [[r["loss"] for r in metrics(run)] for run in (split, straight)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-10)


def test_truncated_shard_is_refused(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    run = tmp_path / "run"
    cots(2, str(config), "--out", str(run), "--until", "2")
    shard = run / "checkpoints" / "step-00000002" / "shard-00001.bin"
    shard.write_bytes(shard.read_bytes()[:-8])
    done = cots(2, str(config), "--out", str(run), "--resume", check=False)
    assert done.returncode != 0
    assert "truncated" in done.stderr and "shard-00001.bin" in done.stderr


@pytest.mark.parametrize("args,message", [
    (["nowhere.toml"], "no configuration file nowhere.toml"),
    (["configs/demo.toml", "--set", "train.mode=sideways"], "train.mode one of"),
    (["configs/demo.toml", "--set", "train.speed=3"], "unknown key train.speed"),
])
def test_bad_configuration_exits_2_with_one_message(args, message):
    done = cots(2, *args, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count(message) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_existing_run_needs_resume_or_fresh(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    run = tmp_path / "run"
    cots(2, str(config), "--out", str(run), "--until", "2")
    done = cots(2, str(config), "--out", str(run), check=False)
    assert done.returncode == 2 and done.stderr.count("already holds checkpoints (step-00000002)") == 1
    assert (run / "checkpoints" / "step-00000002" / "manifest.json").exists()  # nothing lost
    cots(2, str(config), "--out", str(run), "--fresh", "--until", "1")
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == ["step-00000001"]
    assert [r["step"] for r in metrics(run)] == [0]


def test_run_outputs_logs_curves_and_tensorboard(tmp_path):
    """train.log with timestamps, per-step lines on the console at --log-level debug with the
    rank prefix, held-out and norms in metrics.jsonl, TensorBoard events on request."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    run = tmp_path / "run"
    done = cots(2, str(config), "--out", str(run), "--log-level", "debug", "--set", "train.heldout_every=3",
                "--set", "train.tensorboard=true")
    assert "[rank 0/2] step 3: stage 0 loss" in done.stdout and "held-out" in done.stdout
    assert "[rank 0/2] checkpoint" in done.stdout
    log = (run / "train.log").read_text().splitlines()
    assert log[0].startswith("20") and "INFO cots.train: cots train: 2 stage(s)" in log[0]
    assert sum("cots.progress: step" in line for line in log) == 8  # log_every 1: every step
    records = metrics(run)
    assert [r["step"] for r in records if "heldout" in r] == [0, 3, 6]
    assert all(r["time"] > 1.7e9 and set(r["norms"]) == set(r["stages"]) for r in records)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    quiet = cots(2, str(config), "--out", str(tmp_path / "quiet"))  # default: no per-step lines on the console
    assert "step 3:" not in quiet.stdout and "step 3:" in (tmp_path / "quiet" / "train.log").read_text()
    bad = cots(1, str(config), "--out", str(tmp_path / "bad"), "--log-level", "loud", check=False)
    assert bad.returncode == 2 and "invalid choice: 'loud'" in bad.stderr
