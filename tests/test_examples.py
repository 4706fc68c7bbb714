"""The examples run under mpiexec and check themselves against serial runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ranks", [2, 3])
def test_heat_diffusion_matches_serial_bit_for_bit(ranks):
    bindir = Path(sys.executable).parent
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run(
        [str(bindir / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpi4py",
         str(ROOT / "examples" / "heat_diffusion.py"), "--size", "37", "--steps", "12"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "distributed == serial, bit for bit: True" in done.stdout


def test_train_autoencoder_same_at_one_and_two_ranks():
    """The one-stage example's losses fall, and 2 ranks print what 1 rank prints (the
    printed figures round away float-rounding differences of the exchanges' sums)."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    outputs = []
    for ranks in (1, 2):
        done = subprocess.run(
            [str(bindir / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpi4py",
             str(ROOT / "examples" / "train_autoencoder.py"), "--steps", "30"],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append([line for line in done.stdout.splitlines() if line.startswith(("step", "done"))])
    assert outputs[0] == outputs[1]
    first, last = (float(line.split()[3]) for line in (outputs[0][0], outputs[0][-2]))
    assert last < 0.5 * first, outputs[0]
