"""Shared test set-up under MPI: rank 0 reports, and a failure on any rank ends the job at once."""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from pathlib import Path

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


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Under mpiexec only rank 0 prints pytest's report: the others' copies would interleave
    with it. A failure on any rank is still printed, by the hook above, before the abort."""
    world = comm.world()
    if config.getoption("with_mpi", default=False) and world.Get_rank() > 0:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)


WATCHDOG_SECONDS = 90.0


@pytest.fixture(autouse=True)
def watchdog(request):
    """End the job when an MPI test runs past WATCHDOG_SECONDS (a rank stuck in a collective
    that another rank never reaches), naming the test, instead of waiting for the outer
    timeout of `make test`."""
    if request.node.get_closest_marker("mpi") is None:
        yield
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def expire() -> None:
        if capture is not None:  # write past pytest's capture: the abort loses captured output
            capture.suspend_global_capture(in_=False)
        world = comm.world()
        sys.stderr.write(f"\n[rank {world.Get_rank()}] {request.node.nodeid} still running after "
                         f"{WATCHDOG_SECONDS:.0f} s: some rank is waiting in a collective; aborting\n")
        sys.stderr.flush()
        comm.abort(world, 2)

    timer = threading.Timer(WATCHDOG_SECONDS, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture
def shared_dir():
    """A directory every rank sees (collective): made on rank 0, its path sent to all;
    removed at the end, after every rank is done with it."""
    world = comm.world()
    made = tempfile.mkdtemp(prefix="cots-test-") if world.Get_rank() == 0 else None
    path = Path(comm.broadcast(world, made))
    yield path
    comm.barrier(world)
    if world.Get_rank() == 0:
        shutil.rmtree(path, ignore_errors=True)
