"""Serial throughput of the layer kernels, as a fraction of the same BLAS's large SGEMM.

Run (one process, no MPI launcher; ``results/layers.json`` is at one thread):

    OMP_NUM_THREADS=1 python benchmarks/bench_layers.py
    python benchmarks/bench_layers.py --threads 2 --repeats 10 --out /tmp/layers.json

``--threads`` (default 1) is written into OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS before NumPy is imported, so it overrides the environment. Every
measurement is the best of ``--repeats`` timed calls after ``--warmup`` untimed ones, all in
this process against this NumPy's BLAS:

- ceilings: ``sgemm`` (a float32 n x n @ n x n product through ``numpy.matmul``, timed first
  and again last; the better of the two is the ceiling, as the machine drifts) and ``memcpy``
  (``numpy.copyto`` of a large float32 array; GB/s = bytes read + written);
- locally connected kernels of :mod:`layers.lc_kernels` on a 64x64 image, batch 32, k=18,
  stride 1, M=8, for Le et al.'s first stage (C=3) and second stage (C=8): ``fwd``
  (``lc_forward``), ``wgrad`` (``lc_weight_grad``), ``dgrad`` (``lc_input_grad``, which adds
  into its output), ``bwd`` (wgrad then dgrad) and ``fwd_bwd`` (all three). Useful FLOPs per
  output location: forward 2*M*K*B (K = k*k*C), each gradient the same, fwd_bwd 6*M*K*B.
  These use the kernels ``kernel="auto"`` picks (``kernels_chosen`` in the JSON); the two
  gradient implementations are also timed forced, ``lc_{wgrad,dgrad,fwd_bwd}_patches`` and
  ``..._batch_major`` (:mod:`layers.lc_gradients`), in the same run;
- the layer wrapper: ``layers.LocallyConnected2D`` on a 1x1 process grid, ``forward(x)``
  then ``backward(dy)``, stage 1 shape, counted with the same useful FLOPs (its bias is extra);
- window kernels of :mod:`layers.window_kernels` on an (H, W, C, B) input, Le et al.'s
  pooling and normalisation shapes by default: L2 pooling (p x p, stride) and LCN (n x n,
  sigma = n/4, floor 0.1), forward and backward, in GB/s of the arrays each call reads
  and writes once (forward: x in, y out; pooling backward: x, y, dy in, dx out; LCN
  backward: x, dy in, dx out), against ``memcpy`` and a copy of the input's size
  (``memcpy_window_gbs``, a cache-sized ceiling);
- if ``import torch`` works (and not ``--no-torch``): the same layer the common PyTorch way,
  ``F.unfold`` to (B, K, L) patches and a ``bmm`` with per-location weights (L, M, K),
  backward by autograd with ``x`` requiring a gradient, ``torch.set_num_threads(threads)``;
  its fraction is of NumPy's sgemm (torch's own, often a different BLAS, is reported too).
  Stage 1 only by default (``--torch-shapes stage1 stage2`` adds stage 2, about 100 s more).

Results are checked once before timing: the forward against :func:`layers.reference.lc_reference`,
both gradients through the adjoint identities <dy, f(x, w)> = <dw, w> = <dx, x>, the layer
and torch against the kernels. The JSON goes to ``benchmarks/results/layers.json`` by default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from machine_info import header, write_result  # beside this script (sys.path[0] when run as a file)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "layers.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (set before NumPy loads)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (best is kept)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per measurement")
    parser.add_argument("--batch", type=int, default=32, help="batch size B")
    parser.add_argument("--image", type=int, default=64, help="image side H = W of the LC shapes")
    parser.add_argument("--sgemm-n", type=int, default=2048, help="side of the sgemm ceiling")
    parser.add_argument("--memcpy-mib", type=int, default=256, help="MiB copied by the memcpy ceiling")
    parser.add_argument("--window-shape", type=int, nargs=3, default=[47, 47, 8], metavar=("H", "W", "C"),
                        help="input of the pooling and LCN kernels (batch from --batch)")
    parser.add_argument("--pool", type=int, default=5, help="L2 pooling window p")
    parser.add_argument("--pool-stride", type=int, default=1, help="L2 pooling stride")
    parser.add_argument("--lcn", type=int, default=5, help="LCN window n (odd)")
    parser.add_argument("--torch-shapes", nargs="*", default=["stage1"], choices=["stage1", "stage2"],
                        help="shapes for the PyTorch comparison (stage2 takes about 100 s more)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file")
    args = parser.parse_args()
    if min(args.threads, args.repeats, args.batch, args.sgemm_n, args.memcpy_mib) < 1 or args.warmup < 0:
        raise ValueError(f"expected threads, repeats, batch, sgemm-n, memcpy-mib >= 1 and warmup >= 0, got {args}")
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    for _var in THREAD_VARS:  # before NumPy (and its BLAS) is loaded
        os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402

import distarray as da  # noqa: E402
import layers  # noqa: E402
from layers.lc_kernels import (  # noqa: E402
    choose_kernel, fan_in, lc_forward, lc_input_grad, lc_weight_grad, out_extent)
from layers.reference import lc_reference  # noqa: E402
from layers.window_kernels import l2pool_backward, l2pool_forward, lcn_backward, lcn_forward  # noqa: E402

POOL_EPS = 1e-6
LCN_FLOOR = 0.1


@dataclass(frozen=True)
class LCShape:
    """A locally connected layer: (H, W, C) input, k x k windows, M maps, batch B."""

    name: str
    H: int
    W: int
    C: int
    k: int
    stride: int
    M: int
    B: int

    @property
    def out_hw(self) -> tuple[int, int]:
        return out_extent(self.H, self.k, self.stride), out_extent(self.W, self.k, self.stride)

    @property
    def K(self) -> int:
        return fan_in(self.k, self.C)

    @property
    def gemm_flops(self) -> int:
        """Useful FLOPs of one of the three GEMMs over all locations: 2*M*K*B each."""
        oh, ow = self.out_hw
        return 2 * self.M * self.K * self.B * oh * ow

    def describe(self) -> str:
        return f"C{self.C} k{self.k} s{self.stride} M{self.M}"


# -- timing ------------------------------------------------------------------------------


def measure(op: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``op`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        op()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        op()
        times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float], work: float, unit: str) -> dict:
    """Best, median and worst time; ``rate`` is ``work`` / best time / 1e9 in ``unit``."""
    best, med = min(times), statistics.median(times)
    return {"repeats": len(times), "best_s": best, "median_s": med, "max_s": max(times),
            "work": work, "unit": unit, "rate": work / best / 1e9, "rate_at_median": work / med / 1e9}


class Timer:
    """Runs and records measurements: a summary and a table row (name, detail) for each."""

    def __init__(self, repeats: int, warmup: int):
        self.repeats, self.warmup = repeats, warmup
        self.timings: dict[str, dict] = {}
        self.details: dict[str, str] = {}

    def __call__(self, name: str, detail: str, op: Callable[[], object], work: float, unit: str) -> float:
        """Time ``op``; returns its rate (GFLOP/s or GB/s at the best time)."""
        self.timings[name] = summary(measure(op, self.repeats, self.warmup), work, unit)
        self.details[name] = detail
        return self.timings[name]["rate"]


# -- checks ------------------------------------------------------------------------------


def close(a: float, b: float, rtol: float = 1e-3) -> bool:
    return abs(a - b) <= rtol * max(abs(a), abs(b), 1e-30)


def check_kernels(xb: Any, w: Any, dy: Any, shape: LCShape) -> tuple[Any, Any, Any]:
    """Forward against the loop reference, both gradients by adjoint identities; returns
    (y, dw, dx) from the kernels."""
    y = lc_forward(xb, w, shape.k, shape.stride)  # (oh, ow, M, B)
    ref = lc_reference(xb.astype(np.float64), w.astype(np.float64), None, shape.k, shape.stride, 0)
    if not np.allclose(y, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max()):
        raise AssertionError(f"{shape.name}: lc_forward disagrees with lc_reference")
    inner = np.vdot(dy.astype(np.float64), ref)
    for kernel in ("patches", "batch-major"):
        dw = lc_weight_grad(xb, dy, shape.k, shape.stride, kernel=kernel)  # (oh, ow, M, K)
        dx = lc_input_grad(w, dy, shape.k, shape.stride, xb.shape[:2], kernel=kernel)  # (H, W, C, B)
        if not (close(np.vdot(dw.astype(np.float64), w), inner) and close(np.vdot(dx.astype(np.float64), xb), inner)):
            raise AssertionError(f"{shape.name}: the {kernel} gradients fail the adjoint identity")
    return y, dw, dx


# -- measurements ------------------------------------------------------------------------


def bench_sgemm(timer: Timer, name: str, n: int, rng: np.random.Generator) -> float:
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    return timer(name, f"{n}x{n} @ {n}x{n}", lambda: np.matmul(a, b, out=c), 2.0 * n ** 3, "GFLOP/s")


def bench_memcpy(timer: Timer, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> float:
    src = rng.standard_normal(shape, dtype=np.float32)
    dst = src.copy()  # pages touched: no first-touch faults in the timed copies
    return timer(name, f"{src.nbytes / 2**20:.1f} MiB", lambda: np.copyto(dst, src), 2.0 * src.nbytes, "GB/s")


def bench_lc(timer: Timer, shape: LCShape, rng: np.random.Generator) -> dict:
    """The three kernels and their sums for one shape; returns that shape's JSON entry."""
    oh, ow = shape.out_hw
    k, s = shape.k, shape.stride
    xb = rng.standard_normal((shape.H, shape.W, shape.C, shape.B), dtype=np.float32)  # (H, W, C, B)
    scale = shape.K ** -0.5
    w = rng.uniform(-scale, scale, (oh, ow, shape.M, shape.K)).astype(np.float32)  # (oh, ow, M, K)
    dy = rng.standard_normal((oh, ow, shape.M, shape.B), dtype=np.float32)  # (oh, ow, M, B)
    check_kernels(xb, w, dy, shape)
    y = np.empty((oh, ow, shape.M, shape.B), dtype=np.float32)
    dw = np.empty_like(w)
    dx = np.zeros_like(xb)  # lc_input_grad adds into it: its values grow, the work does not

    def fwd() -> None:
        lc_forward(xb, w, k, s, out=y)

    def wgrad(kernel: str | None = None) -> None:
        lc_weight_grad(xb, dy, k, s, out=dw, kernel=kernel)

    def dgrad(kernel: str | None = None) -> None:
        lc_input_grad(w, dy, k, s, (shape.H, shape.W), out=dx, kernel=kernel)

    def bwd(kernel: str | None = None) -> None:
        wgrad(kernel)
        dgrad(kernel)

    def fwd_bwd(kernel: str | None = None) -> None:
        fwd()
        bwd(kernel)

    one, d = shape.gemm_flops, shape.describe()
    chosen = {p: choose_kernel(None, p, k, s, shape.C, shape.M, shape.B) for p in ("weight", "input")}
    entry = asdict(shape) | {"oh": oh, "ow": ow, "K": shape.K, "flops_per_gemm": one, "kernels_chosen": chosen}
    for part, op, gemms in (("fwd", fwd, 1), ("wgrad", wgrad, 1), ("dgrad", dgrad, 1), ("bwd", bwd, 2),
                            ("fwd_bwd", fwd_bwd, 3)):
        entry[f"lc_{part}_gflops"] = timer(f"{shape.name}_lc_{part}", d, op, gemms * one, "GFLOP/s")
    for kernel in ("patches", "batch-major"):  # each gradient implementation forced, same run
        tag = kernel.replace("-", "_")
        for part, op, gemms in (("wgrad", wgrad, 1), ("dgrad", dgrad, 1), ("fwd_bwd", fwd_bwd, 3)):
            entry[f"lc_{part}_{tag}_gflops"] = timer(f"{shape.name}_{part}_{tag}", d, lambda: op(kernel),
                                                     gemms * one, "GFLOP/s")
    return entry


def bench_layer(timer: Timer, shape: LCShape, kernel_fwd_bwd: float, rng: np.random.Generator) -> dict:
    """``LocallyConnected2D`` on a 1x1 grid: forward(x), backward(dy), both."""
    grid = da.ProcessGrid((1, 1))
    layer = layers.LocallyConnected2D((shape.H, shape.W, shape.C), shape.M, shape.k, grid, stride=shape.stride)
    oh, ow = shape.out_hw
    split = (0, 1, None, None)
    xg = rng.standard_normal((shape.H, shape.W, shape.C, shape.B), dtype=np.float32)  # (H, W, C, B)
    dyg = rng.standard_normal((oh, ow, shape.M, shape.B), dtype=np.float32)  # (oh, ow, M, B)
    x, dy = da.from_global(xg, grid, split=split), da.from_global(dyg, grid, split=split)
    y = layer.forward(x).local
    dx = layer.backward(dy).local
    w = layer.weight.local
    _, dw_ref, dx_ref = check_kernels(xg, w, dyg, shape)
    ok = (np.allclose(y, lc_forward(xg, w, shape.k, shape.stride), rtol=1e-4, atol=1e-5)
          and np.allclose(layer.grad_weight.local, dw_ref, rtol=1e-4, atol=1e-4)
          and np.allclose(dx, dx_ref, rtol=1e-4, atol=1e-4))
    if not ok:
        raise AssertionError(f"{shape.name}: LocallyConnected2D disagrees with the kernels")

    one, d = shape.gemm_flops, f"{shape.describe()}, 1x1 grid"
    fwd = timer("layer_fwd", d, lambda: layer.forward(x), one, "GFLOP/s")
    bwd = timer("layer_bwd", d, lambda: layer.backward(dy), 2 * one, "GFLOP/s")
    both = timer("layer_fwd_bwd", d, lambda: (layer.forward(x), layer.backward(dy)), 3 * one, "GFLOP/s")
    return {"shape": shape.name, "grid": [1, 1], "bias": layer.bias is not None,
            "layer_fwd_gflops": fwd, "layer_bwd_gflops": bwd, "layer_fwd_bwd_gflops": both,
            "layer_vs_kernels": both / kernel_fwd_bwd}


def bench_windows(timer: Timer, hwc: tuple[int, int, int], batch: int, p: int, stride: int, n: int,
                  rng: np.random.Generator) -> dict:
    """L2 pooling and LCN, forward and backward, in GB/s of the arrays read and written."""
    xb = rng.standard_normal(tuple(hwc) + (batch,), dtype=np.float32)  # (H, W, C, B)
    sigma = n / 4
    y = l2pool_forward(xb, p, stride, POOL_EPS)  # (oh, ow, C, B)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    z = lcn_forward(xb, n, sigma, LCN_FLOOR)  # (H-n+1, W-n+1, C, B)
    dz = rng.standard_normal(z.shape, dtype=np.float32)
    out_y, out_z = np.empty_like(y), np.empty_like(z)
    shape = "x".join(map(str, xb.shape))
    pool, norm = f"{shape} p{p} s{stride}", f"{shape} n{n}"
    rates = {
        "l2pool_fwd": timer("l2pool_fwd", pool, lambda: l2pool_forward(xb, p, stride, POOL_EPS, out=out_y),
                            xb.nbytes + y.nbytes, "GB/s"),
        "l2pool_bwd": timer("l2pool_bwd", pool, lambda: l2pool_backward(xb, y, dy, p, stride),
                            2 * xb.nbytes + 2 * y.nbytes, "GB/s"),
        "lcn_fwd": timer("lcn_fwd", norm, lambda: lcn_forward(xb, n, sigma, LCN_FLOOR, out=out_z),
                         xb.nbytes + z.nbytes, "GB/s"),
        "lcn_bwd": timer("lcn_bwd", norm, lambda: lcn_backward(xb, dz, n, sigma, LCN_FLOOR),
                         2 * xb.nbytes + z.nbytes, "GB/s"),
    }
    return {"input_shape": list(xb.shape), "pool": p, "pool_stride": stride, "pool_eps": POOL_EPS,
            "lcn": n, "lcn_sigma": sigma, "lcn_floor": LCN_FLOOR,
            **{f"{name}_gbs": rate for name, rate in rates.items()}}


def bench_torch(timer: Timer, shapes: list[LCShape], threads: int, n: int, rng: np.random.Generator) -> dict | None:
    """The layer as unfold + bmm with autograd; None if torch cannot be imported."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    out = {"version": torch.__version__, "threads": torch.get_num_threads(),
           "torch_sgemm_gflops": timer("torch_sgemm", f"{n}x{n} @ {n}x{n}", lambda: torch.mm(a, b, out=c),
                                       2.0 * n ** 3, "GFLOP/s"),
           "shapes": {}}
    for shape in shapes:
        oh, ow = shape.out_hw
        L, k, s = oh * ow, shape.k, shape.stride
        xb = rng.standard_normal((shape.H, shape.W, shape.C, shape.B), dtype=np.float32)
        w = rng.uniform(-1, 1, (oh, ow, shape.M, shape.K)).astype(np.float32)  # (oh, ow, M, K)
        dy = rng.standard_normal((oh, ow, shape.M, shape.B), dtype=np.float32)
        y_ref, dw_ref, dx_ref = check_kernels(xb, w, dy, shape)
        # ours: fan-in (dj, di, c); unfold's: (c, di, dj)
        wt = torch.from_numpy(np.ascontiguousarray(
            w.reshape(L, shape.M, k, k, shape.C).transpose(0, 1, 4, 3, 2).reshape(L, shape.M, shape.K)))
        wt.requires_grad_(True)  # (L, M, K)
        xt = torch.from_numpy(np.ascontiguousarray(xb.transpose(3, 2, 0, 1))).requires_grad_(True)  # (B, C, H, W)
        dyt = torch.from_numpy(np.ascontiguousarray(dy.reshape(L, shape.M, shape.B).transpose(0, 2, 1)))  # (L, B, M)

        def forward() -> Any:
            patches = F.unfold(xt, k, stride=s)  # (B, K, L)
            return torch.bmm(patches.permute(2, 0, 1), wt.transpose(1, 2))  # (L, B, M)

        def fwd_bwd() -> None:
            xt.grad = wt.grad = None
            forward().backward(dyt)

        fwd_bwd()
        ok = (np.allclose(forward().detach().numpy(), y_ref.reshape(L, shape.M, shape.B).transpose(0, 2, 1),
                          rtol=1e-3, atol=1e-3)
              and np.allclose(xt.grad.numpy().transpose(2, 3, 1, 0), dx_ref, rtol=1e-3, atol=1e-3)
              and np.allclose(wt.grad.numpy().reshape(L, shape.M, shape.C, k, k).transpose(0, 1, 4, 3, 2),
                              dw_ref.reshape(L, shape.M, k, k, shape.C), rtol=1e-3, atol=1e-3))
        if not ok:
            raise AssertionError(f"{shape.name}: the torch layer disagrees with the kernels")

        def fwd_only() -> None:
            with torch.no_grad():
                forward()

        one, d = shape.gemm_flops, shape.describe()
        out["shapes"][shape.name] = {
            "torch_lc_fwd_gflops": timer(f"{shape.name}_torch_fwd", d, fwd_only, one, "GFLOP/s"),
            "torch_lc_fwd_bwd_gflops": timer(f"{shape.name}_torch_fwd_bwd", d, fwd_bwd, 3 * one, "GFLOP/s")}
    return out


# -- report ------------------------------------------------------------------------------



def blas_info() -> dict:
    try:
        config = np.show_config(mode="dicts")
        return {"blas": config["Build Dependencies"]["blas"], "simd": config.get("SIMD Extensions")}
    except (TypeError, KeyError):  # an older NumPy without mode="dicts"
        return {"blas": None, "simd": None}


def with_fractions(entry: dict, sgemm: float, memcpy: float) -> dict:
    """``entry`` plus ``X_fraction`` = X_gflops / sgemm and ``X_memcpy_ratio`` = X_gbs / memcpy."""
    out = dict(entry)
    for key, value in entry.items():
        if key.endswith("_gflops") and value is not None:
            out[key[: -len("_gflops")] + "_fraction"] = value / sgemm
        elif key.endswith("_gbs") and value is not None:
            out[key[: -len("_gbs")] + "_memcpy_ratio"] = value / memcpy
    return out


def print_table(result: dict, timer: Timer) -> None:
    m, blas = result["machine"], result["blas"]["blas"] or {}
    print(f"layer kernels, {result['threads']} thread(s), batch {result['batch']}, best of "
          f"{result['repeats']} after {result['warmup']} warm-up; {m['cpu_model']}, {m['cores']} cores")
    print(f"numpy {result['numpy']}, BLAS {blas.get('name')} {blas.get('version')}; "
          f"ceilings: sgemm {result['sgemm_gflops']:.1f} GFLOP/s (best of start and end), "
          f"memcpy {result['memcpy_gbs']:.1f} GB/s")
    ceilings = {"GFLOP/s": result["sgemm_gflops"], "GB/s": result["memcpy_gbs"]}
    print(f"{'measurement':<28}{'shape':<26}{'best ms':>10}{'median ms':>11}{'rate':>9}  {'unit':<9}"
          f"{'of ceiling':>10}")
    for name, t in timer.timings.items():
        print(f"{name:<28}{timer.details[name]:<26}{t['best_s'] * 1e3:10.2f}{t['median_s'] * 1e3:11.2f}"
              f"{t['rate']:9.2f}  {t['unit']:<9}{t['rate'] / ceilings[t['unit']]:10.3f}")
    print("of ceiling: rate / sgemm for GFLOP/s rows, rate / memcpy for GB/s rows (rates at the best time)")
    if result["torch"] is None:
        print("torch: not measured (not installed, or --no-torch)")


def main(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(7)
    timer = Timer(args.repeats, args.warmup)
    stage1 = LCShape("stage1", args.image, args.image, 3, 18, 1, 8, args.batch)
    stage2 = LCShape("stage2", args.image, args.image, 8, 18, 1, 8, args.batch)
    hwc = tuple(args.window_shape)
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    sgemm_start = bench_sgemm(timer, "sgemm_start", args.sgemm_n, rng)
    memcpy = bench_memcpy(timer, "memcpy", (args.memcpy_mib << 18,), rng)
    memcpy_window = bench_memcpy(timer, "memcpy_window", hwc + (args.batch,), rng)
    shapes = {s.name: bench_lc(timer, s, rng) for s in (stage1, stage2)}
    layer = bench_layer(timer, stage1, shapes["stage1"]["lc_fwd_bwd_gflops"], rng)
    window = bench_windows(timer, hwc, args.batch, args.pool, args.pool_stride, args.lcn, rng)
    window["memcpy_window_gbs"] = memcpy_window
    torch_shapes = [s for s in (stage1, stage2) if s.name in args.torch_shapes]
    torch_result = None if args.no_torch else bench_torch(timer, torch_shapes, args.threads, args.sgemm_n, rng)
    sgemm_end = bench_sgemm(timer, "sgemm_end", args.sgemm_n, rng)  # the machine drifts: the best of both
    sgemm = max(sgemm_start, sgemm_end)
    elapsed = time.perf_counter() - t_start

    shapes = {name: with_fractions(entry, sgemm, memcpy) for name, entry in shapes.items()}
    layer, window = with_fractions(layer, sgemm, memcpy), with_fractions(window, sgemm, memcpy)
    top = {key: value for key, value in shapes["stage1"].items() if key.startswith("lc_")}
    top |= {f"{key}_stage2": value for key, value in shapes["stage2"].items() if key.startswith("lc_")}
    torch_top = {"torch_lc_fwd_bwd_gflops": None, "torch_lc_fwd_bwd_fraction": None}
    if torch_result is not None:
        torch_result = with_fractions(torch_result, sgemm, memcpy)
        torch_result["shapes"] = {name: with_fractions(entry, sgemm, memcpy)
                                  for name, entry in torch_result["shapes"].items()}
        torch_top |= {key: torch_result[key] for key in ("torch_sgemm_gflops", "torch_sgemm_fraction")}
        for name, entry in torch_result["shapes"].items():
            suffix = "" if name == "stage1" else f"_{name}"
            torch_top |= {f"{key}{suffix}": value for key, value in entry.items()}
    result = {
        **header("layers"),
        "numpy": np.__version__,
        "blas": blas_info(),
        "threads": args.threads,
        "thread_env": {var: os.environ.get(var) for var in THREAD_VARS},
        "batch": args.batch,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "loadavg_1min_start_end": [load_start[0], os.getloadavg()[0]],
        "seconds": elapsed,
        "verified": True,
        "sgemm_n": args.sgemm_n,
        "sgemm_gflops": sgemm,
        "sgemm_start_end_gflops": [sgemm_start, sgemm_end],
        "memcpy_gbs": memcpy,
        **top,
        **{key: value for key, value in layer.items() if key.startswith("layer_")},
        **{key: value for key, value in window.items() if key.endswith(("_gbs", "_ratio"))},
        **torch_top,
        "shapes": shapes,
        "layer": layer,
        "window": window,
        "torch": torch_result,
        "timings": timer.timings,
        "notes": ("rates are at the best of the repeats; X_fraction = X_gflops / sgemm_gflops, "
                  "X_memcpy_ratio = X_gbs / memcpy_gbs; sgemm_gflops is the better of a measurement at "
                  "the start and one at the end. Useful FLOPs: 2*M*K*B per output location per GEMM; "
                  "fwd 1 GEMM, wgrad 1, dgrad 1, bwd 2, fwd_bwd 3. Window GB/s count each array read or "
                  "written once; memcpy GB/s count the bytes read plus written. layer_vs_kernels = "
                  "layer_fwd_bwd_gflops / lc_fwd_bwd_gflops (stage1)."),
    }
    print_table(result, timer)
    print(f"lc_fwd_bwd_fraction stage1 {top['lc_fwd_bwd_fraction']:.3f}, stage2 "
          f"{top['lc_fwd_bwd_fraction_stage2']:.3f}; layer/kernels {layer['layer_vs_kernels']:.3f}; "
          f"{elapsed:.0f} s")
    write_result(args.out, result)


if __name__ == "__main__":
    main(ARGS)
