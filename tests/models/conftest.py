"""Fixtures of the model tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from distarray import comm


@pytest.fixture
def shared_dir():
    """A directory every rank sees (collective): made on rank 0, its path sent to all;
    removed at the end, after every rank is done with it."""
    world = comm.world()
    made = tempfile.mkdtemp(prefix="cots-test-") if world.Get_rank() == 0 else None
    path = Path(comm.allgather(world, made)[0])
    yield path
    comm.barrier(world)
    if world.Get_rank() == 0:
        shutil.rmtree(path, ignore_errors=True)
