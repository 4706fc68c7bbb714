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
