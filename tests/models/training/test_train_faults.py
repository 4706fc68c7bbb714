"""`cots train` under faults, at 2 ranks under mpiexec (each launch with a timeout): a diverging
run stops at the first non-finite step with one line and status 1, writing and pruning no
checkpoint; `train.on_nonfinite = "skip"` skips such steps; SIGTERM, SIGINT and SIGUSR1 end
the step, write a checkpoint and exit 128 + signal, and `--resume` then reaches the weights
of an uninterrupted run bit for bit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from distarray import comm
from models.config import load_config
from models.training.trainer import Trainer

from .cli_env import BIN, ENV, ROOT


CONFIG = """
[model]
input = [16, 16, 1]
seed = 3
[[model.stages]]
k = 4
maps = 2
pool = 2
{constraint}
[train]
steps = {steps}
batch = 4
lr = 0.001
checkpoint_every = {every}
keep_checkpoints = 2
"""


def write_config(tmp_path: Path, steps: int, every: int = 0, bounded: bool = True) -> Path:
    """Tied, unit-norm filters (bounded: no learning rate makes them diverge) or Le et al.'s
    plain form (a large learning rate makes the loss infinite at once)."""
    file = tmp_path / f"config{steps}.toml"
    constraint = 'tied = true\nnorm = "encoder"' if bounded else ""
    file.write_text(CONFIG.format(steps=steps, every=every, constraint=constraint))
    return file


def command(config: Path, run: Path, *extra: str) -> list[str]:
    return [str(BIN / "mpiexec"), "-n", "2", str(BIN / "cots"), "train", str(config), "--out", str(run), "--quiet",
            *extra]


def train(config: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(config, run, *extra), capture_output=True, text=True, timeout=300, env=ENV,
                          cwd=ROOT)


def errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


def weights(run: Path, checkpoint: str) -> dict[str, np.ndarray]:
    trainer = Trainer(load_config(run / "config.toml"), world=comm.self_comm())
    trainer.load(run / "checkpoints" / checkpoint)
    return {name: p.local.copy() for name, p in trainer.network.parameters().items()}


def test_divergence_stops_with_one_line_and_keeps_the_checkpoints(tmp_path):
    config, run = write_config(tmp_path, 8, every=2, bounded=False), tmp_path / "run"
    assert train(config, run, "--until", "4").returncode == 0
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step-00000002", "step-00000004"]
    before = weights(run, "step-00000004")
    done = train(config, run, "--resume", "--set", "train.lr=1e12")
    assert done.returncode == 1, done.stderr[-2000:]
    lines = errors(done)
    assert len(lines) == 1 and lines[0].startswith("cots train: error: step ") and "not finite" in lines[0], lines
    assert "Traceback" not in done.stderr and "RuntimeWarning" not in done.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == kept  # nothing written, nothing pruned
    after = weights(run, "step-00000004")
    assert all(np.array_equal(before[n], after[n]) for n in before)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["update"] == "stopped" and records[-1]["nonfinite_stages"] == [0]  # kept for diagnosis


def test_skip_policy_skips_non_finite_steps(tmp_path):
    config, run = write_config(tmp_path, 6, bounded=False), tmp_path / "run"
    done = train(config, run, "--set", "train.lr=1e12", "--set", "train.on_nonfinite=skip")
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(6))
    assert any(r.get("update") == "skipped" for r in records)
    assert (run / "checkpoints" / "step-00000006").is_dir()


def stop_with(sig: int, config: Path, run: Path) -> subprocess.CompletedProcess:
    """Start a run and send ``sig`` to mpiexec once 20 steps are logged; returns the
    finished process (stdout, stderr, status)."""
    process = subprocess.Popen(command(config, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV, cwd=ROOT)
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 20:
            process.send_signal(sig)
            break
        time.sleep(0.02)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signal_checkpoints_and_resume_is_bit_identical(tmp_path, sig):
    steps = 600
    config = write_config(tmp_path, steps)
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    done = stop_with(sig, config, stopped)
    assert done.returncode == 128 + sig, done.stderr[-2000:]
    lines = errors(done)
    name = signal.Signals(sig).name
    assert len(lines) == 1 and lines[0].startswith(f"[rank 0/2] cots train: stopped by {name} after step ")
    assert "--resume" in lines[0]
    step = int(lines[0].split("after step ")[1].split(":")[0]) + 1
    assert step < steps and (stopped / "checkpoints" / f"step-{step:08d}").is_dir()
    resumed = train(config, stopped, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert train(config, whole).returncode == 0
    ours, theirs = weights(stopped, f"step-{steps:08d}"), weights(whole, f"step-{steps:08d}")
    assert all(ours[n].tobytes() == theirs[n].tobytes() for n in theirs)


def test_usage_errors_are_one_line_with_status_2(tmp_path):
    config = write_config(tmp_path, 4)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    done = train(config, tmp_path / "done")
    assert done.returncode == 0, done.stderr[-2000:]
    cases = {
        "--resume (continue the run) or --fresh": [tmp_path / "r1", "--resume", "--fresh"],
        "expected --until STEP >= 1 (steps counted over all stages), got 0": [tmp_path / "r2", "--until", "0"],
        "got -3": [tmp_path / "r3", "--until", "-3"],
        "is a file: expected a directory": [a_file],
        "cannot write to the run directory": [a_file / "sub"],
        'run.backend = "cupy" needs CuPy and a GPU': [tmp_path / "r4", "--set", "run.backend=cupy"],
        "--until 2 is not after step 4, where the run stands": [tmp_path / "done", "--resume", "--until", "2"],
    }
    for message, (run, *extra) in cases.items():
        done = train(config, run, *extra)
        lines = errors(done)
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("cots train: error: "), (message, lines)
        assert message in lines[0], (message, lines)
    assert sorted(p.name for p in (tmp_path / "done" / "checkpoints").iterdir()) == ["step-00000004"]
    assert weights(tmp_path / "done", "step-00000004")  # the refused resume left the run's checkpoint loadable


def test_fresh_clears_the_earlier_run_and_nothing_else(tmp_path):
    from models.build import INDEX_FILES
    from models.cli import run_outputs

    assert set(INDEX_FILES) <= set(run_outputs())
    config, run = write_config(tmp_path, 3), tmp_path / "run"
    assert train(config, run).returncode == 0
    for name in ("report.html", "neurons.json", "report/filters.png", "notes.txt"):
        (run / name).parent.mkdir(exist_ok=True)
        (run / name).write_text("earlier")
    assert train(config, run, "--fresh", "--until", "1").returncode == 0
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml", "curves.png", "loss.png",
                                                     "metrics.jsonl", "notes.txt", "train.log"]
    assert (run / "train.log").read_text().count("cots train: 1 stage(s)") == 1  # the earlier run's log went too
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]


@pytest.mark.parametrize("change, message", [
    (["--set", "train.steps=5"], "written by a greedy run of train.steps = 3 per stage, configured 5: the stage "
                                 "boundaries would move; resume with train.steps = 3, or start again with --fresh"),
    (["--set", "train.optimizer=adagrad"], 'its optimiser state is for train.optimizer = "sgd", configured "adagrad"'),
    (["--set", "train.mode=joint"], 'it was written in train.mode = "greedy", configured "joint"'),
])
def test_a_resume_that_would_reinterpret_the_checkpoint_is_refused(tmp_path, change, message):
    config, run = tmp_path / "two.toml", tmp_path / "run"
    second_stage = "[[model.stages]]\nk = 2\nmaps = 2\npool = 1\nlcn = 0\n"  # TOML allows it after [train]
    config.write_text(CONFIG.format(steps=3, every=0, constraint="") + second_stage)
    assert train(config, run, "--until", "2").returncode == 0
    done = train(config, run, "--resume", *change)
    lines = errors(done)
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], lines


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_older_checkpoint(tmp_path, monkeypatch, capsys):
    import errno

    import distarray.checkpoint as checkpoint
    from models.cli import main

    config, run = write_config(tmp_path, 4, every=2), tmp_path / "run"
    assert main(["train", str(config), "--out", str(run), "--quiet", "--until", "2"]) == 0
    before = weights(run, "step-00000002")

    def full(path, chunks):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "_write_atomic", full)
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(run), "--quiet", "--resume"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cots train: error: ") and "No space left on device" in lines[0], lines
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002"]  # the partial save removed
    after = weights(run, "step-00000002")
    assert all(np.array_equal(before[n], after[n]) for n in before)


def test_a_full_disk_on_one_rank_at_2_ranks_is_one_line_relayed(tmp_path):
    config, run = write_config(tmp_path, 4, every=2), tmp_path / "run"
    assert train(config, run, "--until", "2").returncode == 0
    job = [str(BIN / "mpiexec"), "-n", "2", sys.executable,  # as the cots script runs: not under -m mpi4py
           str(ROOT / "tests" / "models" / "training" / "full_disk_job.py"), "1",
           str(config), "--out", str(run), "--quiet", "--resume"]
    done = subprocess.run(job, capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = errors(done)
    assert len(lines) == 1 and lines[0].startswith("cots train: error: ") and "No space left on device" in lines[0], lines
    assert "rank 1" in lines[0]  # the failing rank's message, relayed by rank 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002"]
    assert weights(run, "step-00000002")


def test_print_config_and_an_inline_table_replacing_data(tmp_path):
    done = subprocess.run([str(BIN / "cots"), "train", "configs/demo.toml", "--print-config", "--out", str(tmp_path / "run"),
                           "--set",
                           'data={source="folder", path="frames/", on_error="skip"}'],
                          capture_output=True, text=True, timeout=120, env=ENV, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    (tmp_path / "printed.toml").write_text(done.stdout)
    printed = load_config(tmp_path / "printed.toml")
    assert printed.data.source == "folder" and dict(printed.data.options) == {"path": "frames/", "on_error": "skip"}
    assert printed.model == load_config(ROOT / "configs" / "demo.toml").model
    assert not (tmp_path / "run").exists()  # nothing was trained or written
