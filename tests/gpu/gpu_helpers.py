"""Shared pieces of the GPU tests: the skip when no GPU is visible, and host/device copies.

Every test here runs the CuPy path against the NumPy one on the same data. Without a GPU
they are skipped (the reason says so); `make gpu-check` runs them on a machine with one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import distarray as da
from distarray import backend

needs_gpu = pytest.mark.skipif(not da.gpu_available(), reason="needs CuPy and a GPU (make gpu-check)")


def to_device(x: np.ndarray) -> Any:
    """``x`` copied into GPU memory (only after needs_gpu has let the test run)."""
    return backend.namespace("cupy").asarray(x)


def rel_err(got: Any, want: Any) -> float:
    """||got - want|| / ||want||, both brought to the host in float64."""
    g = backend.to_host(got).astype(np.float64)
    w = backend.to_host(want).astype(np.float64)
    return float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30))
