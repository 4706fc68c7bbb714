"""Serial test: under ``python -m mpi4py`` an exception on one rank ends the whole job.

Launches ``mpiexec -n 2`` (the one next to this Python) on a tiny script in which rank 1
raises while rank 0 waits in a collective; the job must end quickly with a non-zero code
and the exception in its output, instead of leaving rank 0 waiting forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

MPIEXEC = Path(sys.executable).parent / "mpiexec"
# variables of an enclosing MPI job, which would confuse a nested mpiexec
_JOB_PREFIXES = ("PMI_", "PMIX_", "HYDI_", "HYDRA_", "MPI_LOCAL", "OMPI_")

MESSAGE = "rank 1 failed on purpose"

WAITS = {
    "barrier": "comm.Barrier()",
    "distarray fetch": "x.fetch([(0, 8)])",
}


def script(wait: str) -> str:
    return textwrap.dedent(f"""\
        import numpy as np
        from mpi4py import MPI
        import distarray as da

        comm = MPI.COMM_WORLD
        x = da.zeros((8,), da.ProcessGrid())
        if comm.Get_rank() == 1:
            raise RuntimeError("{MESSAGE}")
        {wait}
        print("rank 0 got past the wait", flush=True)
        """)


@pytest.mark.parametrize("wait", list(WAITS), ids=list(WAITS))
def test_exception_on_one_rank_aborts_the_job(tmp_path, wait):
    path = tmp_path / "fail_on_rank_1.py"
    path.write_text(script(WAITS[wait]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_JOB_PREFIXES)}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    start = time.monotonic()
    done = subprocess.run(
        [str(MPIEXEC), "-n", "2", sys.executable, "-m", "mpi4py", str(path)],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    elapsed = time.monotonic() - start
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert elapsed < 20, f"took {elapsed:.1f} s\n{output}"
    assert MESSAGE in output, output
    assert "got past the wait" not in output, output
