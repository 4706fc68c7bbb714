"""The layers and the halo exchange with CuPy arrays, against the same run's cuBLAS SGEMM and
host-memory MPI (run by `make gpu-check`; needs CuPy and a GPU).

Run:

    python benchmarks/bench_gpu.py --out /tmp/bench_gpu.json                        # layers, 1 GPU
    mpiexec -n 2 python -m mpi4py benchmarks/bench_gpu.py --halo --out /tmp/halo_gpu.json

Layers (one process): a float32 ``cupy.matmul`` of two n x n matrices is the ceiling
(``sgemm_gflops``). The locally connected kernels of :mod:`layers.lc_kernels` run on Le et
al.'s stage 1 and stage 2 shapes (as benchmarks/bench_layers.py, 64x64 input, k = 18,
M = 8) at batch 32 and at ``--big-batch``, once per gradient implementation
(``patches``, ``batch-major``). Each shape is first checked against the NumPy kernels
(relative error under 1e-4). Timing uses CUDA events: ``--warmup`` calls, then the median
of ``--repeats``.

Halo (``--halo``, 2 or more ranks): an activation-sized block (200, 200, 8, 32) float32 split
over the ranks on axis 0. The ghost-cell update with the block in GPU memory is timed
against ``sendrecv`` of the same bytes between host buffers (the raw-MPI baseline). The
probe's answer is recorded as ``cuda_aware``: true means the update sent device buffers,
false means it staged them through host memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import distarray as da  # the checkout on PYTHONPATH (make gpu-check sets it), or installed
from distarray import backend
from distarray import comm
from layers.lc_kernels import lc_forward, lc_input_grad, lc_weight_grad, out_extent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halo", action="store_true", help="the halo exchange (under mpiexec, >= 2 ranks)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls (median kept)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--sgemm-n", type=int, default=8192, help="side of the SGEMM ceiling")
    parser.add_argument("--big-batch", type=int, default=256, help="the second batch size of the LC shapes")
    parser.add_argument("--out", type=Path, required=True, help="JSON file")
    args = parser.parse_args(argv)
    if min(args.repeats, args.sgemm_n, args.big_batch) < 1 or args.warmup < 0:
        raise SystemExit(f"expected repeats, sgemm-n, big-batch >= 1 and warmup >= 0, got {vars(args)}")
    return args


def gpu_median_seconds(cp: Any, op: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median seconds of ``op`` over ``repeats`` calls, each between two CUDA events."""
    for _ in range(warmup):
        op()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        op()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def rel_err(got: Any, want: np.ndarray) -> float:
    g = backend.to_host(got).astype(np.float64)
    return float(np.linalg.norm(g - want) / max(np.linalg.norm(want), 1e-30))


def bench_shape(cp: Any, args: argparse.Namespace, C: int, B: int, sgemm: float) -> dict:
    """One LC shape: forward, both gradients and fwd+bwd per kernel, checked against NumPy."""
    H, k, s, M = 64, 18, 1, 8
    oh = out_extent(H, k, s)
    rng = np.random.default_rng(C * 1000 + B)
    x = rng.standard_normal((H, H, C, B), dtype=np.float32)
    w = (rng.standard_normal((oh, oh, M, k * k * C), dtype=np.float32) / np.sqrt(k * k * C)).astype(np.float32)
    dy = rng.standard_normal((oh, oh, M, B), dtype=np.float32)
    xg, wg, dyg = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    flops = 2.0 * M * k * k * C * B * oh * oh  # one GEMM's useful FLOPs over all locations
    entry: dict[str, Any] = {"C": C, "B": B, "k": k, "M": M, "H": H, "flops_per_gemm": flops}
    entry["err_fwd"] = rel_err(lc_forward(xg, wg, k, s), lc_forward(x, w, k, s).astype(np.float64))
    y, dw, dx = cp.empty((oh, oh, M, B), cp.float32), cp.empty_like(wg), cp.zeros_like(xg)
    entry["fwd_gflops"] = flops / gpu_median_seconds(cp, lambda: lc_forward(xg, wg, k, s, out=y),
                                                     args.repeats, args.warmup) / 1e9
    for kernel in ("patches", "batch-major"):
        tag = kernel.replace("-", "_")
        entry[f"err_wgrad_{tag}"] = rel_err(lc_weight_grad(xg, dyg, k, s, kernel=kernel),
                                            lc_weight_grad(x, dy, k, s, kernel="patches").astype(np.float64))
        entry[f"err_dgrad_{tag}"] = rel_err(lc_input_grad(wg, dyg, k, s, (H, H), kernel=kernel),
                                            lc_input_grad(w, dy, k, s, (H, H), kernel="patches").astype(np.float64))

        def wgrad() -> None:
            lc_weight_grad(xg, dyg, k, s, out=dw, kernel=kernel)

        def dgrad() -> None:
            lc_input_grad(wg, dyg, k, s, (H, H), out=dx, kernel=kernel)

        def fwd_bwd() -> None:
            lc_forward(xg, wg, k, s, out=y)
            wgrad()
            dgrad()

        for name, op, gemms in (("wgrad", wgrad, 1), ("dgrad", dgrad, 1), ("fwd_bwd", fwd_bwd, 3)):
            rate = gemms * flops / gpu_median_seconds(cp, op, args.repeats, args.warmup) / 1e9
            entry[f"{name}_{tag}_gflops"] = rate
            entry[f"{name}_{tag}_fraction"] = rate / sgemm
    entry["fwd_fraction"] = entry["fwd_gflops"] / sgemm
    worst = max(v for key, v in entry.items() if key.startswith("err_"))
    entry["verified"] = bool(worst < 1e-4)
    return entry


def bench_layers(args: argparse.Namespace) -> dict:
    cp = backend.namespace("cupy")
    n = args.sgemm_n
    a = cp.random.standard_normal((n, n), dtype=cp.float32)
    b = cp.random.standard_normal((n, n), dtype=cp.float32)
    c = cp.empty((n, n), cp.float32)
    sgemm = 2.0 * n ** 3 / gpu_median_seconds(cp, lambda: cp.matmul(a, b, out=c), args.repeats, args.warmup) / 1e9
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    out: dict[str, Any] = {"benchmark": "gpu_layers", "device": props["name"].decode(errors="replace"),
                           "cupy": cp.__version__, "sgemm_n": n, "sgemm_gflops": sgemm, "shapes": {}}
    for C, name in ((3, "stage1"), (8, "stage2")):
        for B in (32, args.big_batch):
            entry = bench_shape(cp, args, C, B, sgemm)
            out["shapes"][f"{name}_b{B}"] = entry
            print(f"{name} B={B}: fwd {entry['fwd_fraction']:.3f}, fwd+bwd patches "
                  f"{entry['fwd_bwd_patches_fraction']:.3f} / batch-major {entry['fwd_bwd_batch_major_fraction']:.3f} "
                  f"of cuBLAS SGEMM ({sgemm:.0f} GFLOP/s); verified {entry['verified']}", flush=True)
    best = max(out["shapes"].values(), key=lambda e: max(e["fwd_bwd_patches_fraction"], e["fwd_bwd_batch_major_fraction"]))
    out["lc_fwd_bwd_fraction_best"] = max(best["fwd_bwd_patches_fraction"], best["fwd_bwd_batch_major_fraction"])
    out["verified"] = all(e["verified"] for e in out["shapes"].values())
    return out


def bench_halo(args: argparse.Namespace) -> dict:
    world = comm.world()
    size, rank = world.Get_size(), world.Get_rank()
    if size < 2:
        raise SystemExit(f"expected --halo under mpiexec with at least 2 ranks, got {size}")
    da.use_local_gpu()
    cp = backend.namespace("cupy")
    grid = da.ProcessGrid((size, 1))
    shape, h = (200, 200, 8, 32), 17
    widths = (h, h, 0, 0)  # rows travel between ranks; the columns' halo is padding
    x = da.uniform(shape, grid, seed=7, backend_name="cupy")
    plan = x.halo_plan(widths)  # built once, reused by every timed call
    got = backend.to_host(plan(x))
    ok = bool(np.array_equal(got, da.uniform(shape, grid, seed=7).halo(widths)))
    row_bytes = h * shape[1] * shape[2] * shape[3] * 4  # one neighbour's halo
    peers = [p for p in (rank - 1, rank + 1) if 0 <= p < size]

    buf = cp.asarray(got)  # the interior already in place: each call moves only the halo

    def halo() -> None:  # the ghost-cell update, as benchmarks/bench_halo.py times it
        plan.begin(x, out=buf, remote_only=True)
        plan.end()
        cp.cuda.Device().synchronize()

    send = np.ones(row_bytes // 4, np.float32)
    recv = np.empty_like(send)

    def raw() -> None:  # the same bytes, host to host, with each neighbour in turn
        for peer in peers:
            comm.sendrecv(world, send, peer, recv, peer)

    def timed(op: Callable[[], None]) -> float:
        for _ in range(args.warmup):
            op()
        times = []
        for _ in range(args.repeats):
            comm.barrier(world)
            t0 = time.perf_counter()
            op()
            times.append(comm.allreduce(world, time.perf_counter() - t0, "max"))
        return statistics.median(times)

    t_halo, t_raw = timed(halo), timed(raw)
    total = comm.allreduce(world, row_bytes * len(peers), "sum")
    return {"benchmark": "gpu_halo", "ranks": size, "shape": list(shape), "halo": h, "verified": ok,
            "cuda_aware": bool(comm.cuda_aware()), "bytes_received": total,
            "halo_gbs": total / t_halo / 1e9, "raw_host_gbs": total / t_raw / 1e9,
            "halo_to_raw": t_raw / t_halo, "mpi_library": comm.library_version().splitlines()[0]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not da.gpu_available():
        print("bench_gpu: CuPy sees no GPU; nothing measured", file=sys.stderr)
        return 2
    result = bench_halo(args) if args.halo else bench_layers(args)
    if comm.world().Get_rank() == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=1))
    return 0 if result.get("verified") else 1


if __name__ == "__main__":
    sys.exit(main())
