"""A machine profile for the planner: the rates its cost model uses, measured on this
machine (``cots plan --calibrate``) or given by hand.

- ``gemm_flops``: FLOP/s of one rank running the locally connected kernels
  (:func:`layers.lc_kernels.lc_forward`, small batched GEMMs) at a Le et al.-sized window;
- ``memory_bw``: bytes/s of one rank streaming arrays (a large copy, counted as read plus write);
- ``network_bw`` and ``latency``: a two-rank exchange of large and of 8-byte messages (each
  rank sends and receives at once, as halo exchanges do).

The predicted step time is the sum of compute, memory traffic and communication (no overlap
assumed, so it errs long where the layers hide their messages behind the interior's work).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Rates", "calibrate"]


@dataclass(frozen=True)
class Rates:
    """Rates of one rank (see the module docstring)."""

    gemm_flops: float
    memory_bw: float
    network_bw: float
    latency: float
    source: str = "given"

    def __post_init__(self) -> None:
        if min(self.gemm_flops, self.memory_bw, self.network_bw) <= 0 or self.latency < 0:
            raise ValueError(f"expected positive rates and a latency >= 0, got {self}")

    def predict(self, plan: Any, params_trained: int, itemsize: int) -> dict[str, float]:
        """Seconds of one training step of a :class:`~models.planner.RankPlan`: compute,
        memory (each activation element written and read about 3 times; the optimiser's
        update reads and writes weights, gradient and state), communication, total."""
        compute = plan.flops / self.gemm_flops
        traffic = 3 * plan.memory["activations"] + 6 * params_trained * itemsize
        memory = traffic / self.memory_bw
        comm = plan.halo_bytes / self.network_bw + plan.messages * self.latency
        return {"compute": compute, "memory": memory, "comm": comm, "total": compute + memory + comm}

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


def _best(run: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _gemm_rate(dtype: Any = np.float32) -> float:
    from layers.lc_kernels import lc_forward

    k, channels, maps, batch, out = 18, 3, 8, 32, 16  # a Le et al. window over a 16 x 16 block
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((out + k - 1, out + k - 1, channels, batch)).astype(dtype)  # (Hb, Wb, C, B)
    w = rng.standard_normal((out, out, maps, k * k * channels)).astype(dtype)  # (oh, ow, M, K)
    y = np.empty((out, out, maps, batch), dtype)
    seconds = _best(lambda: lc_forward(xb, w, k, out=y), 5)
    return 2.0 * w.size * batch / seconds


def _memory_rate() -> float:
    a = np.ones(16 << 20, np.float32)  # 64 MiB
    b = np.empty_like(a)
    seconds = _best(lambda: np.copyto(b, a), 5)
    return 2.0 * a.nbytes / seconds


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
        results.append(_best(lambda: comm.sendrecv(world, send, peer, recv, peer), 10 if size > 8 else 200))
    measured = comm.allgather(world, results if rank == 0 else None)[0]
    latency, big = measured
    return (8 << 20) / max(big - latency, 1e-12), latency


def calibrate(world: Any = None) -> Rates:
    """Measure this machine's rates (collective over ``world``; at 2+ ranks, ranks 0 and 1
    measure the network; on one rank the network rates are those of shared memory, from
    the copy rate, with a 1 microsecond latency)."""
    from distarray import comm

    world = comm.world() if world is None else world
    gemm, memory = _gemm_rate(), _memory_rate()
    network = _network_rates(world)
    gemm, memory = comm.allgather(world, (gemm, memory))[0]
    if network is None:
        return Rates(gemm, memory, memory / 2, 1e-6, source="calibrated on 1 rank (network = shared memory)")
    return Rates(gemm, memory, network[0], network[1], source=f"calibrated on {world.Get_size()} ranks")
