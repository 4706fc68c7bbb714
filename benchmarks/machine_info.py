"""What the benchmarks record about the machine they ran on (shared by the benchmark scripts)."""

from __future__ import annotations

import os
import platform
import socket


def machine() -> dict:
    """Host name, platform, CPU model and core counts (usable: this process's affinity)."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "processor": platform.machine(),
            "cpu_model": model, "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def use_packages(root) -> None:
    """Make ``import layers`` find the package, not benchmarks/layers.py: take this folder off
    ``sys.path`` and put the repository ``root`` first (call before importing the packages)."""
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
