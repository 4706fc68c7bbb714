"""examples/slurm_train.sh without Slurm: its command line runs under the PyPI mpiexec, starts
at step 0 when there is no checkpoint and resumes when there is one. (The status it requeues
on, 138 after SIGUSR1, is tested in test_train_faults.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .cli_env import BIN, ROOT

SCRIPT = ROOT / "examples" / "slurm_train.sh"

CONFIG = """
[model]
input = [12, 12, 1]
[[model.stages]]
k = 4
maps = 2
pool = 2
[train]
steps = 3
batch = 2
lr = 0.001
"""


def run_script(config: Path, out: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONFIG": str(config), "OUT": str(out), "MPIEXEC": str(BIN / "mpiexec"),
           "COTS": str(BIN / "cots"), "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1", **extra}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_the_script_starts_then_resumes(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    first = run_script(config, tmp_path / "run")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "no checkpoint" in first.stdout and (tmp_path / "run" / "checkpoints" / "step-00000003").is_dir()
    again = run_script(config, tmp_path / "run")
    assert again.returncode == 0 and "resuming" in again.stdout, again.stdout + again.stderr[-2000:]
