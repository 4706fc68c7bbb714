"""Array backends: NumPy always, CuPy when it imports and a GPU is visible.

The only module that imports cupy. Numeric code elsewhere calls ``xp = get_array_module(x)``
and then only ``xp.*``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

try:  # CuPy is optional: the `gpu` extra.
    import cupy as _cupy
except ImportError:  # pragma: no cover - depends on the machine
    _cupy = None

__all__ = [
    "BACKENDS",
    "available_backends",
    "gpu_available",
    "get_array_module",
    "namespace",
    "backend_name",
    "is_device_array",
    "to_host",
    "synchronize",
    "use_device",
    "copy_to_host",
    "like",
]

BACKENDS = ("numpy", "cupy")


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def available_backends() -> tuple[str, ...]:
    """Names of the backends usable on this machine ("numpy" first)."""
    return ("numpy", "cupy") if gpu_available() else ("numpy",)


def namespace(name: str) -> ModuleType:
    """The array module for a backend name ("numpy" or "cupy")."""
    if name == "numpy":
        return np
    if name == "cupy":
        if not gpu_available():
            raise RuntimeError("backend 'cupy' asked for, but CuPy is not installed or sees no GPU")
        return _cupy
    raise ValueError(f"expected backend in {BACKENDS}, got {name!r}")


def get_array_module(x: Any) -> ModuleType:
    """``cupy`` for a CuPy array, else ``numpy``."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def backend_name(x: Any) -> str:
    """"cupy" for a CuPy array, else "numpy"."""
    return "cupy" if is_device_array(x) else "numpy"


def is_device_array(x: Any) -> bool:
    """True for an array in GPU memory."""
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def to_host(x: Any) -> np.ndarray:
    """A NumPy array with the contents of ``x`` (no copy for a NumPy array)."""
    return _cupy.asnumpy(x) if is_device_array(x) else np.asarray(x)


def synchronize(x: Any = None) -> None:
    """Wait for the current CUDA stream (a no-op for NumPy): call before handing a device
    buffer to MPI."""
    if _cupy is not None and (x is None or is_device_array(x)) and gpu_available():
        _cupy.cuda.get_current_stream().synchronize()


def use_device(local_rank: int) -> int:
    """Select GPU ``local_rank % device_count`` for this process; returns its index."""
    count = _cupy.cuda.runtime.getDeviceCount()
    _cupy.cuda.Device(local_rank % count).use()
    return local_rank % count


def copy_to_host(src: Any, dst: np.ndarray) -> None:
    """Copy array ``src`` (host or device) into the contiguous host array ``dst``."""
    if is_device_array(src):
        _cupy.ascontiguousarray(src).get(out=dst)
    else:
        np.copyto(dst, src)


def like(array: Any, target: Any) -> Any:
    """``array`` on ``target``'s backend: a host array moved to the device when ``target`` is
    a device array, else ``array`` itself (no copy)."""
    if is_device_array(target) and not is_device_array(array):
        return _cupy.asarray(array)
    return array
