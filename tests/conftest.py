"""Shared test set-up: fail fast under MPI so a failure on one rank never leaves others waiting."""

from __future__ import annotations

import sys

import pytest

from distarray import comm


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under mpiexec with several ranks, a failed MPI test prints its report and aborts the job:
    the other ranks may be waiting in a collective the failing rank will never reach."""
    outcome = yield
    report = outcome.get_result()
    world = comm.world()
    if report.failed and item.get_closest_marker("mpi") and world.Get_size() > 1:
        sys.stderr.write(f"\n[rank {world.Get_rank()}] FAILED {item.nodeid} ({report.when})\n")
        sys.stderr.write(report.longreprtext + "\n")
        sys.stderr.flush()
        comm.abort(world, 1)
