"""What may stop a run, agreed by every rank at every step: a signal (graceful stop) and a
non-finite loss or gradient (divergence).

Signals: SIGTERM (Slurm at the time limit, ``scancel``), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's
``--signal=USR1@120``) only set a flag; the trainer finishes the step it is in, all ranks
agree, write a checkpoint and stop. A second signal ends the process at once with the
signal's default action (the other ranks are then ended by mpiexec).

Each step the ranks exchange one small vector, in one Allreduce: the highest signal number
any rank received (0 for none) and, per stage trained, whether any rank saw a non-finite loss
or gradient. The gradient check is one float32 sum per gradient block (a non-finite element
makes the sum non-finite; a finite sum of finite gradients cannot overflow float32 short of
divergence), about one pass over the gradients' memory.
"""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any, Mapping, Sequence

import numpy as np

from distarray import comm

from ..network import stage_of

__all__ = ["NonFiniteError", "STOP_SIGNALS", "SignalFlag", "StepVerdict", "agree_step", "nonfinite_stages"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class NonFiniteError(ValueError):
    """A step's loss or a gradient was not finite (raised on every rank together)."""


class SignalFlag:
    """Catch :data:`STOP_SIGNALS` while installed: the first sets :attr:`received`, the second
    ends the process with that signal's default action. Installed only in the main thread
    (elsewhere Python cannot set handlers: nothing is caught there)."""

    def __init__(self) -> None:
        self.received = 0  # the first signal's number, 0 for none
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "SignalFlag":
        self.received = 0
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:  # the second: no more waiting for the step to end
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.received = signum


@dataclass(frozen=True)
class StepVerdict:
    """What the ranks agreed after a step's backward."""

    signal: int  # the highest signal number any rank received, 0 for none
    nonfinite: tuple[int, ...]  # the stages whose loss or gradient was not finite on some rank

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal).name if self.signal else ""


def nonfinite_stages(losses: Mapping[int, Any], grads: Mapping[str, Any], stages: Sequence[int]) -> list[int]:
    """This rank's stages (of ``stages``) with a non-finite loss term or gradient block (local)."""
    bad = {s for s, l in losses.items() if not (math.isfinite(l.reconstruction) and math.isfinite(l.sparsity))}
    for name, g in grads.items():
        stage = stage_of(name)
        if stage not in bad and g.local.size and not math.isfinite(float(g.local.sum())):
            bad.add(stage)
    return sorted(s for s in bad if s in stages)


def agree_step(world: Any, received: int, bad: Sequence[int], stages: Sequence[int]) -> StepVerdict:
    """Collective: one Allreduce of [signal, one flag per stage of ``stages``] (max over ranks)."""
    vector = np.array([received] + [1 if s in bad else 0 for s in stages], np.int64)
    comm.allreduce_array(world, vector, op="max")
    return StepVerdict(int(vector[0]), tuple(s for s, flag in zip(stages, vector[1:]) if flag))
