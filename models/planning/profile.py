"""A machine profile for the planner: the rates its cost model uses, measured on this
machine (``cots plan --calibrate``) or given by hand.

Given by hand (the four ``cots plan`` rate flags), or measured:

- ``gemm_flops``: FLOP/s of one rank running the locally connected kernels at a Le et
  al.-sized window (18x18x3, 8 maps, batch 32);
- ``memory_bw``: bytes/s of one rank streaming arrays (a large copy, counted as read plus write);
- ``network_bw`` and ``latency``: a two-rank exchange of large and of 8-byte messages (each
  rank sends and receives at once, as halo exchanges do).

Measured only (absent from a hand-made profile, where the model falls back on the four):

- ``kernel_flops``: FLOP/s of each filtering kernel (forward, input gradient, weight gradient)
  at fan-ins from 75 to 2592, interpolated in log fan-in: small GEMMs run far below big ones.
  Each is timed on a block of locations whose filters fill ``block_bytes`` (256 MiB by
  default), beyond the last-level cache, as a real layer's gigabytes of filters are: on the
  2-core VM a 2592-wide forward ran at 82 GFLOP/s on 11 MiB of filters and 50 on 253 MiB;
- ``window_seconds``: seconds per output value of L2 pooling (forward, backward) and local
  contrast normalisation (forward) with 5x5 windows, on inputs of a quarter of the block;
- ``update_seconds``: seconds per parameter of each optimiser's in-place update (the
  chunked code path of :meth:`models.optim.Optimizer.update_block`), over blocks beyond the
  cache, with float32 state and with each 16-bit state storage (keys: :func:`update_key`);
- ``call_seconds``: the fixed cost of one layer call (Python, plans, bookkeeping);
- ``data_seconds``: seconds to draw one sample of the bundled data set, as ``a + b * values``
  (values = H x W x C): every rank draws the whole batch each step;
- ``base_bytes``: resident memory of a rank before any model exists: interpreter, NumPy,
  MPI, the packages and the bundled images (every rank holds its own copy of the data set).

Every timing is the median of a few repeats, as the benchmarks report a median step: the
model predicts a typical step, not the luckiest. The predicted step time
(:meth:`Rates.predict`) is the sum of compute, memory traffic and
communication (no overlap assumed, so it errs long where the layers hide their messages
behind the interior's work).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["Rates", "calibrate", "KERNELS"]

#: The filtering kernels, as :mod:`layers.lc_kernels` names them.
KERNELS = ("forward", "input_grad", "weight_grad")
#: (k, channels) of the calibration windows: fan-ins 75, 192, 288, 972, 2592.
_WINDOWS = ((5, 3), (8, 3), (6, 8), (18, 3), (18, 8))
#: Bytes of filters per calibration block: beyond any CPU's last-level cache (48 MiB here).
BLOCK_BYTES = 256 << 20
#: Passes over a parameter block (read or write, elementwise) of one update, per optimiser:
#: the update's cost in a profile that did not measure it.
UPDATE_PASSES = {"sgd": 10, "adagrad": 16}


@dataclass(frozen=True)
class Rates:
    """Rates of one rank (see the module docstring)."""

    gemm_flops: float
    memory_bw: float
    network_bw: float
    latency: float
    source: str = "given"
    kernel_flops: Mapping[str, list] | None = None
    window_seconds: Mapping[str, float] | None = None
    call_seconds: float = 0.0
    update_seconds: Mapping[str, float] | None = None
    data_seconds: tuple[float, float] = (0.0, 0.0)
    base_bytes: int = 0

    def __post_init__(self) -> None:
        if min(self.gemm_flops, self.memory_bw, self.network_bw) <= 0 or self.latency < 0:
            raise ValueError(f"expected positive rates and a latency >= 0, got {self}")
        object.__setattr__(self, "data_seconds", tuple(float(v) for v in self.data_seconds))

    def kernel_rate(self, kernel: str, fan_in: int) -> float:
        """FLOP/s of ``kernel`` at ``fan_in``: interpolated in log fan-in between measured
        points (clamped at the ends), or ``gemm_flops`` without measurements."""
        points = sorted((self.kernel_flops or {}).get(kernel, []))
        if not points:
            return self.gemm_flops
        x = math.log(max(1, fan_in))
        xs = [math.log(k) for k, _ in points]
        return float(np.interp(x, xs, [r for _, r in points]))

    def predict(self, work: Mapping[str, Any], itemsize: int) -> dict[str, float]:
        """Seconds of one training step of one rank from its work counts
        (:func:`models.planning.planner.plan_network` makes them): compute (filtering kernels, pooling
        and normalisation, fixed per-call costs, the data draw), memory (copies into halo
        boxes and the optimiser's passes over weights, gradients and state), communication
        (bytes over the network rate plus a latency per message), and their total."""
        kernels = sum(flops / self.kernel_rate(kernel, fan_in) for (kernel, fan_in), flops in work["kernels"].items())
        windows = 0.0
        for (op, side), values in work["windows"].items():
            if self.window_seconds and op in self.window_seconds:  # measured at side 5: pooling is
                scale = side / 5 if op.startswith("pool") else (side / 5) ** 2  # separable, LCN is not
                windows += values * self.window_seconds[op] * scale
            else:  # no measurement: a pass over the values per window tap, read and write
                windows += values * 2 * side * 2 * itemsize / self.memory_bw
        a, b = self.data_seconds
        overhead = work["calls"] * self.call_seconds + work["samples"] * (a + b * work["sample_values"])
        compute = kernels + windows + overhead
        measured = self.update_seconds or {}
        plain = work["optimizer"].split("/")[0]  # a profile from before 16-bit state: its float32 rate
        if work["optimizer"] in measured or plain in measured:
            per_param = measured.get(work["optimizer"], measured.get(plain))
        else:  # not measured: the update's passes over weights, gradients and state
            per_param = UPDATE_PASSES[plain] * itemsize / self.memory_bw
        memory = work["copy_bytes"] / self.memory_bw + work["update_params"] * per_param
        comm = work["halo_bytes"] / self.network_bw + work["messages"] * self.latency
        return {"compute": compute, "kernels": kernels, "windows": windows, "overhead": overhead,
                "memory": memory, "comm": comm, "total": compute + memory + comm}

    def save(self, path: str | Path) -> Path:
        """Write the rates as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Rates":
        """Read rates written by :meth:`save`."""
        try:
            values = json.loads(Path(path).read_text())
            return cls(**values)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"expected a profile written by `cots plan --calibrate` at {path}: {exc}") from None


def _median_seconds(run: Any, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _square_side(block_bytes: int, bytes_per_location: int) -> int:
    """Side of a square block of locations taking about ``block_bytes`` (at least 4)."""
    return max(4, round(math.sqrt(block_bytes / bytes_per_location)))


def _kernel_rates(block_bytes: int = BLOCK_BYTES, world: Any = None,
                  dtype: Any = np.float32) -> dict[str, list[list[float]]]:
    """FLOP/s of each filtering kernel at each calibration fan-in: [[fan_in, rate], ...],
    timed on a square block of locations whose filters take about ``block_bytes`` (at least
    4 x 4 locations); ranks of ``world`` start each kernel together, sharing the memory bus
    as training ranks do."""
    from distarray import comm
    from layers.lc_kernels import lc_forward, lc_input_grad, lc_weight_grad

    maps, batch = 8, 32  # Le et al.'s maps and batch
    itemsize = np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    rates: dict[str, list[list[float]]] = {kernel: [] for kernel in KERNELS}
    for k, channels in _WINDOWS:
        fan_in = k * k * channels
        out = _square_side(block_bytes, maps * fan_in * itemsize)
        side = out + k - 1
        xb = rng.standard_normal((side, side, channels, batch), dtype=np.float32).astype(dtype)  # (Hb, Wb, C, B)
        w = rng.standard_normal((out, out, maps, fan_in), dtype=np.float32).astype(dtype)  # (oh, ow, M, K)
        y = np.empty((out, out, maps, batch), dtype)  # (oh, ow, M, B)
        dw, dx = np.empty_like(w), np.zeros_like(xb)
        runs = {"forward": lambda: lc_forward(xb, w, k, out=y),
                "input_grad": lambda: lc_input_grad(w, y, k, 1, (side, side), out=dx),
                "weight_grad": lambda: lc_weight_grad(xb, y, k, 1, out=dw)}
        for kernel, run in runs.items():
            run()  # warm up
            if world is not None:
                comm.barrier(world)
            rates[kernel].append([fan_in, 2.0 * w.size * batch / _median_seconds(run, 3)])
        del xb, w, y, dw, dx
    return rates


def _window_seconds(block_bytes: int = BLOCK_BYTES, dtype: Any = np.float32) -> dict[str, float]:
    """Seconds per output value of 5x5 L2 pooling (forward, backward) and LCN (forward), on
    an input block of about ``block_bytes / 4`` (activations stream from memory too)."""
    from layers.window_kernels import l2pool_backward, l2pool_forward, lcn_forward

    p, maps, batch = 5, 8, 32
    out = _square_side(block_bytes // 4, maps * batch * np.dtype(dtype).itemsize)
    xb = np.random.default_rng(1).standard_normal((out + p - 1, out + p - 1, maps, batch),
                                                  dtype=np.float32).astype(dtype)  # (Hb, Wb, M, B)
    y = l2pool_forward(xb, p, 1, 1e-4)  # (out, out, M, B)
    runs = {"pool_forward": lambda: l2pool_forward(xb, p, 1, 1e-4, out=y),
            "pool_backward": lambda: l2pool_backward(xb, y, y, p, 1),
            "norm_forward": lambda: lcn_forward(xb, p, p / 4.0, 0.1)}
    return {op: _median_seconds(run, 3) / y.size for op, run in runs.items()}


def _call_seconds() -> float:
    """The fixed cost of one layer call: a 2x2 pooling forward of a 4x4 single-image input."""
    import distarray as da
    from distarray import comm
    from layers import L2Pooling

    grid = da.ProcessGrid((1, 1), comm=comm.self_comm())
    layer = L2Pooling((4, 4, 1), 2, grid)
    layout = layer.input_layout(1)
    x = da.DistArray(np.ones(layout.box(0).shape, np.float32), layout, grid)  # (4, 4, 1, 1)
    layer.forward(x)
    return _median_seconds(lambda: layer.forward(x), 20)


def _data_seconds(batch: int = 32) -> tuple[tuple[float, float], int]:
    """Seconds to draw one bundled sample as ``a + b * values``, fitted to draws of 32x32x3
    and 200x200x3 samples; and this process's resident bytes once the first data set is
    loaded (what a training rank holds before its model: libraries and data)."""
    from ..data import BundledImages

    points, base = [], 0
    for side in (32, 200):
        source = BundledImages((side, side), 3, seed=0)
        source.batch(0, batch)
        base = base or _resident_bytes()
        points.append((side * side * 3, _median_seconds(lambda: source.batch(1, batch), 2) / batch))
    (v0, t0), (v1, t1) = points
    b = max(0.0, (t1 - t0) / (v1 - v0))
    return (max(0.0, t0 - b * v0), b), base


def _resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _memory_rate(block_bytes: int = BLOCK_BYTES) -> float:
    """Bytes/s of a copy of ``block_bytes`` (read plus write)."""
    a = np.ones(max(1, block_bytes // 4), np.float32)
    b = np.empty_like(a)
    seconds = _median_seconds(lambda: np.copyto(b, a), 5)
    return 2.0 * a.nbytes / seconds


#: The optimiser-state storage calibrated besides float32 (``train.state_dtype``, rounding).
STATE_STORAGE = (("bfloat16", "nearest"), ("bfloat16", "stochastic"), ("float16", "nearest"))


def update_key(optimizer: str, state_dtype: str = "float32", rounding: str = "nearest") -> str:
    """The ``update_seconds`` key of an optimiser with its state stored as ``state_dtype``:
    ``"adagrad"`` for float32 state, ``"adagrad/bfloat16/stochastic"`` otherwise."""
    return optimizer if state_dtype == "float32" else f"{optimizer}/{state_dtype}/{rounding}"


def _update_seconds(block_bytes: int = BLOCK_BYTES) -> dict[str, float]:
    """Seconds per parameter of each optimiser's update of a ``block_bytes`` block (with its
    gradient and state, as large), for float32 state and each 16-bit storage."""
    from ..optim import OPTIMIZERS, make_optimizer
    from ..precision import storage_dtype

    n = max(1, block_bytes // 4)
    w, g = np.ones(n, np.float32), np.full(n, 1e-3, np.float32)
    seconds = {}
    for name in OPTIMIZERS:
        for stored, rounding in (("float32", "nearest"),) + STATE_STORAGE:
            optimizer = make_optimizer(name, {}, state_dtype=stored, rounding=rounding)
            state = [np.zeros(n, storage_dtype(stored)) for _ in optimizer.slots]
            optimizer.update_block(w, g, state, 1e-3)  # warm up
            seconds[update_key(name, stored, rounding)] = _median_seconds(
                lambda: optimizer.update_block(w, g, state, 1e-3), 3) / n
    return seconds


def _network_rates(world: Any) -> tuple[float, float] | None:
    """(bytes/s, seconds per message) of ranks 0 and 1 exchanging; None on one rank."""
    from distarray import comm

    if world.Get_size() < 2:
        return None
    rank = world.Get_rank()
    results = []
    for size in (8, 8 << 20):
        send, recv = np.ones(size, np.uint8), np.empty(size, np.uint8)
        peer = 1 - rank if rank < 2 else None
        comm.barrier(world)
        if peer is None:
            results.append(None)
            continue
        comm.sendrecv(world, send, peer, recv, peer)  # warm up
        results.append(_median_seconds(lambda: comm.sendrecv(world, send, peer, recv, peer), 10 if size > 8 else 200))
    measured = comm.broadcast(world, results if rank == 0 else None)
    latency, big = measured
    return (8 << 20) / max(big - latency, 1e-12), latency


def calibrate(world: Any = None, block_bytes: int = BLOCK_BYTES) -> Rates:
    """Measure this machine's rates (collective over ``world``: every rank measures its own
    kernels, on filter blocks of ``block_bytes``, all at once; rank 0's figures are kept; at
    2+ ranks, ranks 0 and 1 measure the network; on one rank the network rates are those of
    shared memory, from the copy rate, with a 1 microsecond latency). Takes about half a
    minute at the default block (it loads the bundled images once)."""
    if block_bytes < 1:
        raise ValueError(f"expected block_bytes >= 1, got {block_bytes}")
    from distarray import comm

    world = comm.world() if world is None else world
    data, base = _data_seconds()  # first: the resident size before any test array
    kernels = _kernel_rates(block_bytes, world)
    gemm = kernels["forward"][_WINDOWS.index((18, 3))][1]  # the 18x18x3 forward
    comm.barrier(world)
    memory = _memory_rate(block_bytes)
    comm.barrier(world)
    updates = _update_seconds(block_bytes)
    measured = (gemm, memory, kernels, updates, _window_seconds(block_bytes), _call_seconds(), data, base)
    network = _network_rates(world)
    gemm, memory, kernels, updates, windows, call, data, base = comm.broadcast(world, measured)  # rank 0's
    extra = {"kernel_flops": kernels, "window_seconds": windows, "call_seconds": call, "data_seconds": data,
             "base_bytes": base, "update_seconds": updates}
    if network is None:
        return Rates(gemm, memory, memory / 2, 1e-6, source="calibrated on 1 rank (network = shared memory)",
                     **extra)
    return Rates(gemm, memory, network[0], network[1], source=f"calibrated on {world.Get_size()} ranks", **extra)
