"""Helper of test_train_faults.py: `cots train` with the disk full on one rank's checkpoint
shard (every write of a shard on rank ``RANK`` fails with ENOSPC), under mpiexec::

    mpiexec -n 2 python tests/models/training/full_disk_job.py RANK cots-train-args...

Exits with the status `cots train` returns (not under ``-m mpi4py``, which would abort the job
on a non-zero exit, as the `cots` script is not).
"""

from __future__ import annotations

import errno
import sys

import distarray.checkpoint as checkpoint
from distarray import comm
from models.cli import main


def full(path, chunks):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


if __name__ == "__main__":
    if comm.world().Get_rank() == int(sys.argv[1]):
        checkpoint._write_atomic = full
    sys.exit(main(["train", *sys.argv[2:]]))
