"""Halo exchange bandwidth against raw MPI point-to-point moving the same bytes.

Run (the issue's figure is at 2 ranks, one thread each):

    OMP_NUM_THREADS=1 mpiexec -n 2 python -m mpi4py benchmarks/bench_halo.py
    mpiexec -n 2 python -m mpi4py benchmarks/bench_halo.py --repeats 400 --halo 17 --out /tmp/halo.json

An activation-sized block, global shape (H, W, C, B) = (200, 200, 8, 32) float32, is split
over a (ranks, 1) grid: axis 0 over the ranks, axis 1 over a grid dimension of size 1. Every
rank asks for its block grown by ``--halo`` on axes 0 and 1 (explicit widths (h, h, 0, 0);
the same box as ``halo_box(layout, rank, h)``). On axis 1 the halo lies outside the global
bounds, so it is zero padding and moves no message; only the rows on axis 0 travel.

Timed, in interleaved blocks (halo, raw, halo, raw, ...) so machine noise hits all alike:

- ``halo``: the ghost-cell update ``plan.begin(x, out=buf, remote_only=True); plan.end()``
  with ``buf`` preallocated and already holding the interior (the issue's figure);
- ``raw``: ``comm.sendrecv`` of the same bytes between contiguous buffers (the baseline);
- diagnostics: the update with ``check=False`` (no argument-check Allreduce); raw
  ``isend/irecv/waitall``; the plan's full fetch ``plan(x)`` (a new output with the own
  block copied in and the padding zeroed: ``fetch_incl_local``); ``x.halo(h)``, which also
  builds the plan; and the argument check's Allreduce alone.

Each repeat is timed on every rank; a repeat's time is the largest over the ranks, and the
bandwidth is the bytes all ranks receive over the median repeat time. Rank 0 prints a table
and writes the JSON (``benchmarks/results/halo.json`` by default).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import socket
import statistics
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

import distarray as da
from distarray import comm
from machine_info import write_result  # beside this script (sys.path[0] when run as a file)

RAW_TAG = 0  # plans take tags from 1 up
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "halo.json"


def rows_of(extent: int, parts: int, rank: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of axis 0 that ``rank`` owns in a balanced split (larger first)."""
    base, extra = divmod(extent, parts)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def bytes_needed(shape: tuple[int, ...], nranks: int, halo: int, itemsize: int) -> int:
    """Bytes of every rank's halo box that other ranks own, summed over ranks (geometry only).

    The halo box is the block grown by ``halo`` on axes 0 and 1, cut to the global bounds;
    the block lies inside it, so what others own is the cut box's size less the block's.
    """
    rest = math.prod(shape[1:])  # axis 1 is whole in every block; its halo is padding
    total = 0
    for r in range(nranks):
        lo, hi = rows_of(shape[0], nranks, r)
        cut = min(hi + halo, shape[0]) - max(lo - halo, 0)
        total += (cut - (hi - lo)) * rest
    return total * itemsize


def oracle(whole: np.ndarray, box: da.Box) -> np.ndarray:
    """``box`` of the global array ``whole``, zeros outside its bounds (serial)."""
    out = np.zeros(box.shape, dtype=whole.dtype)
    lo = [max(a, 0) for a in box.lo]
    hi = [min(b, n) for b, n in zip(box.hi, whole.shape)]
    if all(h > l for l, h in zip(lo, hi)):
        out[tuple(slice(l - a, h - a) for l, h, a in zip(lo, hi, box.lo))] = \
            whole[tuple(slice(l, h) for l, h in zip(lo, hi))]
    return out


class Raw:
    """Raw point-to-point of the halo rows: each rank sends the rows a neighbour needs and
    receives the rows it needs, contiguous buffers, with the neighbours below and above."""

    def __init__(self, x: da.DistArray, halo: int):
        rank, size, n = x.grid.rank, x.grid.size, x.shape[0]
        lo, hi = rows_of(n, size, rank)
        blocks = [rows_of(n, size, r) for r in range(size)]
        if any(b - a < halo for a, b in blocks):
            raise ValueError(f"the raw baseline needs blocks of at least {halo} rows, got {blocks}")
        self.comm = x.grid.comm
        self.links = []  # (peer, send view, receive buffer, global rows received), lower peer first
        if rank > 0:
            got = (max(lo - halo, 0), lo)
            self.links.append((rank - 1, x.local[:min(halo, hi - lo)],
                               np.empty((got[1] - got[0],) + x.local.shape[1:], x.dtype), got))
        if rank < size - 1:
            got = (hi, min(hi + halo, n))
            self.links.append((rank + 1, x.local[max(hi - lo - halo, 0):],
                               np.empty((got[1] - got[0],) + x.local.shape[1:], x.dtype), got))

    @property
    def bytes_received(self) -> int:
        """Bytes this rank receives per exchange."""
        return sum(buf.nbytes for _, _, buf, _ in self.links)

    def sendrecv(self) -> None:
        """Blocking Sendrecv per neighbour, lower first (a chain: no deadlock)."""
        for peer, send, recv, _ in self.links:
            comm.sendrecv(self.comm, send, peer, recv, peer, RAW_TAG)

    def nonblocking(self) -> None:
        """Irecv and Isend to every neighbour, then Waitall (what a plan posts)."""
        requests = [comm.irecv(self.comm, recv, peer, RAW_TAG) for peer, _, recv, _ in self.links]
        requests += [comm.isend(self.comm, send, peer, RAW_TAG) for peer, send, _, _ in self.links]
        comm.waitall(requests)


def time_block(op: Callable[[], object], reps: int, grid_comm) -> list[float]:
    """Barrier, then ``reps`` timed calls; every repeat's time is the largest over the ranks."""
    times = []
    comm.barrier(grid_comm)
    for _ in range(reps):
        t0 = comm.wtime()
        op()
        times.append(comm.wtime() - t0)
    per_rank = comm.allgather(grid_comm, times)
    return [max(ts) for ts in zip(*per_rank)]


def summary(times: list[float], nbytes: int) -> dict:
    med, low = statistics.median(times), min(times)
    return {"repeats": len(times), "median_s": med, "min_s": low, "max_s": max(times),
            "gbps_at_median": nbytes / med / 1e9 if nbytes else None,
            "gbps_at_min": nbytes / low / 1e9 if nbytes else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[200, 200, 8, 32],
                        help="global shape (H, W, C, B); axis 0 is split over the ranks")
    parser.add_argument("--halo", type=int, default=17, help="halo width on axes 0 and 1")
    parser.add_argument("--repeats", type=int, default=1000, help="timed repeats per measurement")
    parser.add_argument("--block", type=int, default=50, help="repeats per interleaved block")
    parser.add_argument("--warmup", type=int, default=20, help="untimed repeats per measurement")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file (rank 0 writes)")
    args = parser.parse_args()
    shape, h = tuple(args.shape), args.halo
    if len(shape) < 2 or h < 0 or args.repeats < 1 or args.block < 1:
        raise ValueError(f"expected >= 2 axes, halo >= 0, repeats and block >= 1, got {args}")

    grid = da.ProcessGrid((comm.world().Get_size(), 1))
    rank, size = grid.rank, grid.size
    x = da.uniform(shape, grid, seed=7)  # (H/ranks, W, C, B) per rank
    widths = (h, h) + (0,) * (len(shape) - 2)
    plan = x.halo_plan(widths)
    if plan.box != da.halo_box(x.layout, rank, h):
        raise AssertionError(f"explicit widths {widths} give {plan.box}, int {h} gives another box")
    raw = Raw(x, h)

    # -- bytes: the geometry, the plan (reported, judged below) and the raw baseline -------
    needed = bytes_needed(shape, size, h, x.dtype.itemsize)
    moved = comm.allreduce(grid.comm, plan.bytes_received)
    sent = comm.allreduce(grid.comm, plan.bytes_sent)
    raw_moved = comm.allreduce(grid.comm, raw.bytes_received)
    if raw_moved != needed:
        raise AssertionError(f"the raw baseline moves {raw_moved} bytes, the boxes need {needed}")

    # -- correctness, once, before timing ------------------------------------------------
    whole = x.allgather()  # (H, W, C, B)
    expected = oracle(whole, plan.box)
    buf = plan(x)  # the dense halo box: interior, padding and ghosts
    ok = np.array_equal(buf, expected) and np.array_equal(x.halo(h), expected)
    for piece in plan.pattern.incoming:  # spoil the ghosts, then update them in place
        buf[piece.box.slices(plan.box.lo)] = np.nan
    plan.begin(x, out=buf, remote_only=True)
    plan.end()
    ok = ok and np.array_equal(buf, expected)
    raw.sendrecv()
    ok = ok and all(np.array_equal(recv, whole[a:b]) for _, _, recv, (a, b) in raw.links)
    if not all(comm.allgather(grid.comm, ok)):
        raise AssertionError("halo exchange or raw baseline disagrees with the allgather oracle")

    # -- what to time ----------------------------------------------------------------------
    def halo() -> None:
        plan.begin(x, out=buf, remote_only=True)
        plan.end()

    def halo_nocheck() -> None:
        plan.begin(x, out=buf, remote_only=True, check=False)
        plan.end()

    ops = {  # name: (callable, bytes it moves between ranks, counted in the bandwidth)
        "halo": (halo, moved),
        "raw": (raw.sendrecv, raw_moved),
        "halo_nocheck": (halo_nocheck, moved),
        "raw_nonblocking": (raw.nonblocking, raw_moved),
        "fetch_incl_local": (lambda: plan(x), moved),
        "halo_method": (lambda: x.halo(h), moved),
        "check_allreduce": (lambda: comm.agree(grid.comm, None), 0),
    }
    for op, _ in ops.values():
        for _ in range(args.warmup):
            op()
    times: dict[str, list[float]] = {name: [] for name in ops}
    rounds = math.ceil(args.repeats / args.block)
    load_start = os.getloadavg()
    t_start = comm.wtime()
    for i in range(rounds):
        reps = min(args.block, args.repeats - i * args.block)
        names = list(ops)[i % 2::] + list(ops)[:i % 2]  # alternate who goes first
        for name in names:
            times[name] += time_block(ops[name][0], reps, grid.comm)
    elapsed = comm.wtime() - t_start

    if rank != 0:
        return
    timings = {name: summary(times[name], ops[name][1]) for name in ops}
    halo_gbps = timings["halo"]["gbps_at_median"]
    raw_gbps = timings["raw"]["gbps_at_median"]
    ratio = halo_gbps / raw_gbps if moved and raw_moved else None  # None at 1 rank: no messages
    ratio_at_min = (timings["halo"]["gbps_at_min"] / timings["raw"]["gbps_at_min"]
                    if moved and raw_moved else None)
    result = {
        "benchmark": "halo",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "mpi_library": comm.library_version(),
        "mpi4py": metadata.version("mpi4py"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "command": "mpiexec -n %d python -m mpi4py %s" % (size, " ".join(sys.argv)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpus": os.cpu_count(),
        "loadavg_1min_start_end": [load_start[0], os.getloadavg()[0]],
        "ranks": size,
        "grid": list(grid.dims),
        "shape": list(shape),
        "layout": "(H, W, C, B); axis 0 split over the ranks",
        "dtype": str(x.dtype),
        "halo": h,
        "halo_widths": list(widths),
        "repeats": args.repeats,
        "block": args.block,
        "warmup": args.warmup,
        "timed_seconds": elapsed,
        "verified": True,
        "bytes_needed": needed,
        "bytes_moved": moved,
        "bytes_sent": sent,
        "raw_bytes_moved": raw_moved,
        "halo_gbps": halo_gbps,
        "raw_gbps": raw_gbps,
        "ratio": ratio,
        "ratio_at_min": ratio_at_min,
        "halo_nocheck_gbps": timings["halo_nocheck"]["gbps_at_median"],
        "raw_nonblocking_gbps": timings["raw_nonblocking"]["gbps_at_median"],
        "fetch_incl_local_gbps": timings["fetch_incl_local"]["gbps_at_median"],
        "halo_method_incl_plan_gbps": timings["halo_method"]["gbps_at_median"],
        "acceptance": {"bytes_moved == bytes_needed": moved == needed,
                       "ratio >= 0.8": ratio is not None and ratio >= 0.8},
        "timings": timings,
        "notes": ("gbps = bytes received by all ranks / median over repeats of the largest "
                  "per-rank time. halo: plan.begin(x, out=buf, remote_only=True); plan.end(). "
                  "fetch_incl_local: plan(x), a new output with the rank's own block copied "
                  "in and the padding zeroed; halo_method: x.halo(h), which also builds the "
                  "plan; their gbps count only the bytes between ranks. check_allreduce: the "
                  "argument check's Allreduce alone."),
    }
    print(f"halo exchange, {size} ranks, shape {shape} {x.dtype}, halo {h} (widths {widths}), "
          f"{args.repeats} repeats in blocks of {args.block}")
    print(f"bytes needed {needed:,}  moved {moved:,}  raw {raw_moved:,}")
    print(f"{'measurement':<18}{'median ms':>11}{'min ms':>9}{'GB/s (med)':>12}{'GB/s (min)':>12}")
    for name, t in timings.items():
        gbps = "" if t["gbps_at_median"] is None else f"{t['gbps_at_median']:12.2f}{t['gbps_at_min']:12.2f}"
        print(f"{name:<18}{t['median_s'] * 1e3:11.3f}{t['min_s'] * 1e3:9.3f}{gbps}")
    if ratio is not None:
        print(f"ratio halo/raw {ratio:.3f} (at min times {ratio_at_min:.3f})")
    print(f"acceptance: {result['acceptance']}")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
