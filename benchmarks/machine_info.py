"""What the benchmarks record about the machine they ran on (shared by the benchmark scripts)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import sys
from pathlib import Path


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


def header(benchmark: str) -> dict:
    """The fields every benchmark's JSON opens with: its name, the UTC time, the command, machine, Python."""
    return {"benchmark": benchmark,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "machine": machine(), "python": platform.python_version()}


def write_result(path: Path, result: dict, indent: int = 2) -> None:
    """Write a benchmark's result as JSON to ``path`` (creating its folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
    print(f"wrote {path}")
