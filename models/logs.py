"""Logging for the ``cots`` commands: Python's :mod:`logging`, rank-aware.

- Rank 0 prints its records at the chosen level (``--log-level``, default info): info and
  debug to standard output, warnings and errors to standard error. The other ranks print
  warnings and errors only, so that N ranks do not print every line N times.
- With several ranks every line starts with ``[rank r/N]``, so that what mpiexec merges from
  many processes says where it came from.
- ``cots train`` also writes rank 0's records, with timestamps, to ``RUN/train.log`` (at
  info, or debug with ``--log-level debug``), appended across resumes: the summary lines, one
  line per logged step (step, stage, loss, lr, samples/s) and one per checkpoint. The step and
  checkpoint lines (logger ``cots.progress``) reach the console only at ``--log-level
  debug``: by default the progress bar shows them.

Library code logs to ``logging.getLogger("cots")`` (or a child, ``cots.train``); nothing is
printed until :func:`configure` installs the handlers, so that ``import models`` in a
notebook stays quiet.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["LEVELS", "configure", "logger", "add_file", "PROGRESS"]

LEVELS = ("debug", "info", "warning", "error")
NAME = "cots"
PROGRESS = f"{NAME}.progress"  # per-step and per-checkpoint lines: the log file, the console at debug
_MARK = "_cots_handler"  # set on the handlers configure() installs, to replace them on a second call


def logger(child: str | None = None) -> logging.Logger:
    """The ``cots`` logger, or its child ``cots.<child>``."""
    return logging.getLogger(NAME if child is None else f"{NAME}.{child}")


class _Below(logging.Filter):
    """Passes records below ``level`` (the stdout handler leaves warnings to stderr)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _NoProgress(logging.Filter):
    """Drops the per-step lines (logger ``cots.progress``) from the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(PROGRESS)


def _prefix(rank: int, size: int) -> str:
    return f"[rank {rank}/{size}] " if size > 1 else ""


def _handler(stream, level: int, fmt: str, below: int | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(fmt))
    if below is not None:
        handler.addFilter(_Below(below))
    setattr(handler, _MARK, True)
    return handler


def configure(level: str = "info", rank: int = 0, size: int = 1) -> logging.Logger:
    """Install the console handlers of the ``cots`` logger (replacing earlier ones).

    Parameters
    ----------
    level : {"debug", "info", "warning", "error"}
        Rank 0's console level; the other ranks show warnings and errors only.
    rank, size : int
        This process's rank and the number of ranks (for the prefix).
    """
    if level not in LEVELS:
        raise ValueError(f"expected a log level in {list(LEVELS)}, got {level!r}")
    log = logger()
    for handler in [h for h in log.handlers if getattr(h, _MARK, False)]:
        log.removeHandler(handler)
        handler.close()
    chosen = getattr(logging, level.upper())
    shown = chosen if rank == 0 else max(chosen, logging.WARNING)
    fmt = _prefix(rank, size) + "%(message)s"
    console = [_handler(sys.stdout, shown, fmt, below=logging.WARNING),
               _handler(sys.stderr, max(shown, logging.WARNING), fmt)]
    for handler in console:
        if chosen > logging.DEBUG:
            handler.addFilter(_NoProgress())
        log.addHandler(handler)
    log.setLevel(min(chosen, logging.INFO))  # the run's log file keeps info even when the console is quieter
    log.propagate = False
    return log


def add_file(path: str | Path, level: str = "info", rank: int = 0, size: int = 1) -> logging.Handler:
    """Append the ``cots`` logger's records at ``level`` (info at the least) to ``path``,
    with timestamps; returns the handler (remove it with ``logger().removeHandler``)."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(min(getattr(logging, level.upper()), logging.INFO))
    handler.setFormatter(logging.Formatter(f"%(asctime)s {_prefix(rank, size)}%(levelname)s %(name)s: %(message)s"))
    setattr(handler, _MARK, True)
    logger().addHandler(handler)
    return handler
