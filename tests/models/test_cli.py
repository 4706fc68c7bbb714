"""The ``cots`` command: entry point, help, ``info``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models.cli import main


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "info" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert "cots-hpc" in capsys.readouterr().out


def test_info_reports_ranks_and_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "ranks            1 on 1 node(s)" in out
    assert "numpy" in out and "MPI library" in out


def test_console_script_under_mpiexec():
    """The installed `cots` script runs under mpiexec and counts every rank."""
    bindir = Path(sys.executable).parent
    done = subprocess.run([str(bindir / "mpiexec"), "-n", "2", str(bindir / "cots"), "info"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ranks            2 on 1 node(s)" in done.stdout
