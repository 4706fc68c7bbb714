"""A NumPy stand-in for CuPy, for the CPU-side self-check of `make gpu-check` only.

tests/test_gpu_check.py puts tests/gpu/standin on the PYTHONPATH of its child processes, so
``import cupy`` finds this module there. "Device" arrays are an ndarray subclass, so host and
device arrays stay distinct; CUDA events read the host clock. The self-check uses it to show
that tools/gpu_check.py, benchmarks/bench_gpu.py and tests/gpu fit together (commands,
markers, JSON). It says nothing about a GPU: the real check is `make gpu-check` on one.
"""

from __future__ import annotations

import sys
import time
import types

import numpy as _np

_module = sys.modules[__name__]
for _name in dir(_np):
    if not _name.startswith("_") and _name not in ("ndarray", "random"):
        setattr(_module, _name, getattr(_np, _name))


class ndarray(_np.ndarray):  # noqa: N801 - CuPy's name
    """A "device" array: NumPy memory, but not a plain numpy.ndarray."""


def _on_device(function):
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        return result.view(ndarray) if isinstance(result, _np.ndarray) else result
    return wrapped


for _name in ("empty", "zeros", "ones", "full", "asarray", "array", "ascontiguousarray", "empty_like",
              "zeros_like", "ones_like", "full_like", "arange", "concatenate", "stack", "copy", "where"):
    setattr(_module, _name, _on_device(getattr(_np, _name)))

__version__ = "0+numpy-standin"


def asnumpy(x):
    return _np.asarray(x).view(_np.ndarray)


class _Random:
    def standard_normal(self, shape, dtype=_np.float32):
        return _np.random.default_rng(0).standard_normal(shape, dtype=dtype).view(ndarray)


random = _Random()


class _Event:
    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        pass


class _Device:
    def __init__(self, index=0):
        self.id = index

    def synchronize(self):
        pass

    def use(self):
        pass


_runtime = types.SimpleNamespace(getDeviceCount=lambda: 1,
                                 getDeviceProperties=lambda i: {"name": b"NumPy stand-in", "totalGlobalMem": 2**30})
cuda = types.SimpleNamespace(Event=_Event, Device=_Device, runtime=_runtime, get_current_stream=lambda: _Device(),
                             get_elapsed_time=lambda a, b: (b.t - a.t) * 1e3)


def get_default_memory_pool():
    return types.SimpleNamespace(total_bytes=lambda: 0, used_bytes=lambda: 0)
