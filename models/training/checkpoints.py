"""A training run's checkpoints: where they go (``RUN/checkpoints/step-{step:08d}``), which
arrays they hold (``param/{name}`` for the network, ``opt/{name}.{slot}`` for the optimiser),
finding the newest complete one and keeping only the newest few.

Saving, loading, verifying and resharding are the distributed array's
(:mod:`distarray.checkpoint`); this module only names things.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from distarray import DistArray
from distarray.checkpoint import checkpoint_name, remove_checkpoint, resolve_checkpoint

__all__ = ["checkpoint_path", "latest_checkpoint", "parameter_arrays", "prune_checkpoints", "training_arrays"]

_STEP = re.compile(r"step-(\d{8,})")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """``run_dir/checkpoints/step-{step:08d}`` (pure)."""
    return Path(run_dir) / "checkpoints" / f"step-{int(step):08d}"


def parameter_arrays(network: Any) -> dict[str, DistArray]:
    """The network's parameters under their checkpoint names, ``param/{name}``."""
    return {f"param/{n}": p for n, p in network.parameters().items()}


def training_arrays(network: Any, optimizer: Any) -> dict[str, DistArray]:
    """Everything a training checkpoint holds: the parameters and the optimiser state that exists."""
    return parameter_arrays(network) | {f"opt/{n}": s for n, s in optimizer.state.items()}


def _steps(run_dir: str | Path) -> list[int]:
    """Steps of the complete checkpoints under ``run_dir/checkpoints``, ascending (local).
    A checkpoint whose last save was interrupted counts when a complete copy survives."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    matches = [_STEP.fullmatch(checkpoint_name(p.name)) for p in root.iterdir()]
    found = {int(m.group(1)) for m in matches if m}
    return sorted(s for s in found if resolve_checkpoint(checkpoint_path(run_dir, s)) is not None)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint ``run_dir/checkpoints/step-*``, or None (local, no MPI).

    Incomplete ones (no manifest) are skipped. The path is the canonical ``step-*`` one,
    which :func:`distarray.checkpoint.load_checkpoint` reads even when a crash interrupted
    its final swap.
    """
    steps = _steps(run_dir)
    return checkpoint_path(run_dir, steps[-1]) if steps else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints of a run; returns those deleted.

    Not collective: call it on one rank (rank 0), after the save returned.
    """
    if not isinstance(keep, int) or keep < 0:
        raise ValueError(f"expected keep as an int >= 0, got {keep!r}")
    steps = _steps(run_dir)
    doomed = [checkpoint_path(run_dir, s) for s in steps[:max(len(steps) - keep, 0)]]
    for path in doomed:
        remove_checkpoint(path)
    return doomed
