"""Training throughput of the demo network at 1 and 2 ranks (one thread each), and the data path.

Run (one process; it launches every measurement itself under mpiexec: under a minute on an idle
2-core machine, up to about 3 while it waits for other processes to leave the cores, ``--settle``):

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --quick                    # smoke test, under a minute
    python benchmarks/bench_train.py --repeats 5 --steps 80 --out /tmp/train.json
    python benchmarks/bench_train.py --set model.stages.0.maps=16

The driver (the default mode) runs workers with ``mpiexec -n N python -m mpi4py
benchmarks/bench_train.py --worker ...``, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS
set to 1, in interleaved rounds so machine noise hits every configuration alike: each of
``--repeats`` rounds runs, for each mode, 1 rank then 2 ranks (2 then 1 in odd rounds).

A training worker builds ``models.training.trainer.Trainer(config, run_dir=None)`` from ``--config``
(default configs/demo_untied.toml, the network of the figures in docs/benchmarks.md) and
``--set`` overrides, runs ``--warmup`` untimed steps, then
``--steps`` steps timed as a whole (a barrier before starting and after stopping the clock).
Two modes are measured:

- ``greedy_stage0``: the configuration as is; in greedy mode the first ``train.steps`` steps
  train stage 0 only, and every measured step stays inside them;
- ``joint``: ``train.mode="joint"``, every stage at every step (heavier, and the steady case).

Per step, the trainer's record gives seconds of ``data`` (waiting for the batch the prefetch
thread prepared, and the plan that moves the samples to the first stage's layout), ``comm`` (wall time inside exchange begin/end calls: communication *not*
hidden by compute, including waiting for a slower neighbour) and ``compute`` (the rest of the
step, which also holds the loss allgather and any wait inside it). They are summed per rank
and gathered. ``samples_per_s = batch * steps / elapsed``; ``comm_wait_share`` is the largest
over ranks of comm seconds / elapsed; ``data_share`` likewise for data seconds;
``parallel_efficiency = T1 / (2 T2)`` with T the median seconds per step at 1 and 2 ranks.

A data worker (2 ranks) compares the data path the trainer uses, each rank drawing its share
of the samples and one fetch plan moving them to the first stage's layout
(``trainer.input_batch``, here without prefetching), with every rank drawing the whole batch
and keeping its box (the path before) and with rank 0 drawing and ``distarray.scatter``-ing
the blocks, for the configured input (through a Trainer, preprocessing included) and Le et
al.'s (200x200x3, batch 32, a ``BundledImages`` and a ``ProcessGrid``). All give the same
layout and bits (checked once). A batch's time is the largest over the
ranks, barrier before each; the median over ``--data-batches`` interleaved batches is kept.

Rank 0 of each worker prints one JSON line; the driver writes every raw measurement and the
summaries to ``benchmarks/results/train.json`` and prints a short summary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from machine_info import header, write_result  # beside this script (sys.path[0] when run as a file)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "train.json"
DEFAULT_CONFIG = "configs/demo_untied.toml"
MODES = {"greedy_stage0": [], "joint": ['train.mode="joint"']}  # mode: extra --set overrides
PARTS = ("data", "comm", "compute", "step")
SPLIT = (0, 1, None, None)  # (H, W, C, B): rows and columns over the grid


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="training configuration (TOML)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration override, as `cots train --set` (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every configuration")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps before them")
    parser.add_argument("--data-batches", type=int, default=8, help="timed batches per data path and size")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts to compare")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per worker launch")
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds to wait, before each launch, for other processes to leave the cores idle")
    parser.add_argument("--mpiexec", default=None, help="MPI launcher (default: next to this Python)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 round, 4 steps after 2 warm-up, 2 data batches, no settling")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file")
    parser.add_argument("--no-prefetch", action="store_true",
                        help="train without preparing the next batch in the background (to measure what it hides)")
    parser.add_argument("--worker", choices=["train", "data"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=list(MODES), default="greedy_stage0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.warmup, args.data_batches, args.settle = 1, 4, 2, 2, 0.0
    if min(args.repeats, args.steps, args.data_batches, *args.ranks) < 1 or args.warmup < 0:
        raise ValueError(f"expected repeats, steps, data-batches, ranks >= 1 and warmup >= 0, got {args}")
    return args


# -- workers (under mpiexec) -------------------------------------------------------------


def train_worker(args: argparse.Namespace) -> dict | None:
    """Collective: time ``args.steps`` training steps; rank 0 returns the measurement."""
    from distarray import comm
    from models.config import load_config
    from models.training.trainer import Trainer

    config = load_config(ROOT / args.config, args.set + MODES[args.mode])
    trainer = Trainer(config, run_dir=None, prefetch=not args.no_prefetch)
    world = comm.world()
    last = args.warmup + args.steps - 1
    if trainer.greedy and trainer.stages_at(last) != [0]:
        raise ValueError(f"expected warmup + steps ({last + 1}) within stage 0's train.steps "
                         f"({trainer.phase_steps}) in greedy mode")
    layers = {f"stage{s}.{name}": layer for s, stage in enumerate(trainer.network.stages)
              for name, layer in zip(("encoder", "pool", "decoder"), stage.layers)}
    layers |= {f"stage{s}.lcn": norm for s, norm in enumerate(trainer.network.norms) if norm is not None}
    for step in range(args.warmup):
        trainer.train_step(step, step + 1)  # as Trainer.run does: the next batch prefetched
    sums = dict.fromkeys(PARTS, 0.0)
    per_step = []
    comm_before = {name: layer.comm_seconds for name, layer in layers.items()}
    comm.barrier(world)
    start = time.perf_counter()
    for step in range(args.warmup, last + 1):
        seconds = trainer.train_step(step, step + 1 if step < last else None)["seconds"]
        for part in PARTS:
            sums[part] += seconds[part]
        per_step.append(seconds["step"])
    comm.barrier(world)
    elapsed = time.perf_counter() - start
    by_layer = {name: layer.comm_seconds - comm_before[name] for name, layer in layers.items()}
    gathered = comm.allgather(world, (sums, by_layer, per_step))
    if world.Get_rank() != 0:
        return None
    per_rank = {part: [g[0][part] for g in gathered] for part in PARTS}
    steps = sorted(max(ts) for ts in zip(*(g[2] for g in gathered)))  # each step: its slowest rank
    ranks = len(gathered)
    return {
        "kind": "train", "mode": args.mode, "ranks": ranks, "grid": list(trainer.grid.dims),
        "stages": [int(s) for s in trainer.stages_at(args.warmup)], "batch": trainer.batch,
        "steps": args.steps, "warmup": args.warmup, "elapsed_s": elapsed,
        "seconds_per_step": elapsed / args.steps, "samples_per_s": trainer.batch * args.steps / elapsed,
        "comm_wait_share": max(per_rank["comm"]) / elapsed, "data_share": max(per_rank["data"]) / elapsed,
        "per_rank_s": per_rank,
        "comm_by_layer_s": {name: [g[1][name] for g in gathered] for name in layers},
        "step_s_min": steps[0], "step_s_p25": steps[len(steps) // 4], "step_s_median": statistics.median(steps),
        "mpi": comm.library_version(), "loadavg_1min": os.getloadavg()[0],
    }


def time_batches(paths: dict[str, Callable[[int], Any]], count: int, world: Any) -> dict[str, list[float]]:
    """Collective: call every path once per batch, in turn; a call's time is the largest over
    the ranks (barrier before each)."""
    from distarray import comm

    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(count):
        for name, path in paths.items():
            comm.barrier(world)
            t0 = time.perf_counter()
            path(1 + i)
            times[name].append(time.perf_counter() - t0)
    gathered = comm.allgather(world, times)
    return {name: [max(ts) for ts in zip(*(g[name] for g in gathered))] for name in paths}


def data_paths(dataset: Any, grid: Any, layout: Any, batch: int, shares: Callable[[int], Any],
               preprocess: Any = None) -> dict[str, Callable[[int], Any]]:
    """Ways to get the batch of a step into ``layout``: each rank draws its share of the
    samples and one plan moves them (``shares``, the trainer's way), every rank draws the whole
    batch and keeps its box (the way before), rank 0 draws and scatters; plus rank 0's draw
    alone. The first three give the same bits (checked once)."""
    import numpy as np

    import distarray as da

    def whole(step: int):
        images = dataset.batch(step, batch)  # (H, W, C, B) on every rank
        block = images[layout.box(grid.rank).slices()] if preprocess is None else \
            preprocess.apply(images, *layout.box(grid.rank).slices()[:2])
        return da.DistArray(np.ascontiguousarray(block, dtype=layout.dtype), layout, grid)

    def scatter(step: int):
        images = dataset.batch(step, batch) if grid.rank == 0 else None  # (H, W, C, B) on root
        if images is not None and preprocess is not None:
            images = preprocess.apply(images)
        return da.scatter(images, grid, root=0, split=SPLIT)

    def draw_on_root(step: int):
        return dataset.batch(step, batch) if grid.rank == 0 else None

    ours, mine, theirs = shares(0), whole(0), scatter(0)
    same = (theirs.layout == layout and mine.layout == layout and ours.layout == layout
            and np.array_equal(mine.local, theirs.local) and np.array_equal(ours.local, mine.local))
    if not all(da.comm.allgather(grid.comm, same)):
        raise AssertionError(f"the data paths give other layouts or bits ({layout.describe()})")
    return {"each_rank_draws_share": shares, "every_rank_draws_all": whole, "root_draws_scatters": scatter,
            "root_draw_only": draw_on_root}


def data_worker(args: argparse.Namespace) -> dict | None:
    """Collective: time the data paths for the configured input and for Le et al.'s."""
    import numpy as np

    import distarray as da
    from distarray import comm
    from distarray.exchange import FetchPlan
    from models.config import load_config
    from models.data import BundledImages
    from models.training.trainer import Trainer

    world = comm.world()
    config = load_config(ROOT / args.config, args.set)
    trainer = Trainer(config, run_dir=None, prefetch=False)
    h, w, c = config.model.input
    demo_layout = trainer.network.input_layout(trainer.local_batch_size)
    cases = {f"{h}x{w}x{c}x{trainer.batch}": (trainer.dataset, trainer.grid, demo_layout, trainer.batch,
                                               trainer.input_batch, trainer.network.preprocess)}
    size, batch = (200, 200), 32
    grid = da.ProcessGrid(da.factor_grid(world.Get_size(), size))
    line = da.ProcessGrid((grid.size,), grid.comm)
    dataset = BundledImages(size, 3, seed=config.model.seed)
    layout = da.Layout.create(size + (3, batch), grid.dims, split=SPLIT, dtype=np.float32)
    counts = da.balanced_blocks(batch, grid.size)
    held = da.Layout.create(size + (3, batch), (grid.size,), split=(None, None, None, 0),
                            blocks=(None, None, None, counts))
    plan = FetchPlan(line, held, layout.box(grid.rank))
    mine = range(sum(counts[:grid.rank]), sum(counts[:grid.rank + 1]))

    def shares(step: int) -> da.DistArray:  # what the trainer's BatchFeed does, without a network
        samples = np.ascontiguousarray(dataset.samples(step, mine).transpose(1, 2, 3, 0))  # (H, W, C, n)
        return da.DistArray(plan(da.DistArray(samples, held, line)), layout, grid)

    cases[f"{size[0]}x{size[1]}x3x{batch}"] = (dataset, grid, layout, batch, shares, None)
    result = {}
    for name, (source, g, lay, b, share, pre) in cases.items():
        paths = data_paths(source, g, lay, b, share, pre)
        times = time_batches(paths, args.data_batches, world)
        result[name] = {"grid": list(g.dims), "batches": args.data_batches,
                        **{f"{path}_s": statistics.median(ts) for path, ts in times.items()},
                        "times_s": times}
        result[name]["scatter_transfer_s"] = result[name]["root_draws_scatters_s"] - result[name]["root_draw_only_s"]
    if world.Get_rank() != 0:
        return None
    return {"kind": "data", "ranks": world.Get_size(), "cases": result, "mpi": comm.library_version()}


# -- driver ------------------------------------------------------------------------------



def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat; 0 where absent)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children (mpiexec and the workers under it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def foreign_load(seconds: float) -> float:
    """Cores kept busy by other processes over ``seconds`` (this one sleeps meanwhile)."""
    before = busy_cpu_s()
    time.sleep(seconds)
    return (busy_cpu_s() - before) / seconds


def settle(limit: float, threshold: float = 0.25, sample: float = 0.5) -> float | None:
    """Wait up to ``limit`` seconds for a ``sample`` with less than ``threshold`` cores busy
    elsewhere (the machine is shared); returns the last sample's load (None: not waited)."""
    deadline = time.perf_counter() + limit
    load = None
    while limit > 0:
        load = foreign_load(sample)
        if load < threshold or time.perf_counter() >= deadline:
            break
    return load


def launcher(args: argparse.Namespace) -> str:
    found = args.mpiexec or (str(Path(sys.executable).parent / "mpiexec")
                             if (Path(sys.executable).parent / "mpiexec").exists() else shutil.which("mpiexec"))
    if not found:
        raise FileNotFoundError("no mpiexec next to this Python or on PATH; pass --mpiexec")
    return found


def launch(args: argparse.Namespace, ranks: int, worker: str, mode: str = "greedy_stage0") -> dict:
    """Run one worker under mpiexec; returns the JSON line rank 0 printed."""
    command = [launcher(args), "-n", str(ranks), sys.executable, "-m", "mpi4py", str(Path(__file__).resolve()),
               "--worker", worker, "--mode", mode, "--config", args.config, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--data-batches", str(args.data_batches)]
    if args.no_prefetch:
        command.append("--no-prefetch")
    for assignment in args.set:
        command += ["--set", assignment]
    env = dict(os.environ, **{var: "1" for var in THREAD_VARS})
    load_before = settle(args.settle)
    busy, ours, started = busy_cpu_s(), children_cpu_s(), time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"worker timed out after {args.timeout:g} s: {' '.join(command)}") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"worker failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["launch_s"] = wall = time.perf_counter() - started
    result["foreign_cores_before"] = load_before
    result["foreign_cores_during"] = max(0.0, busy_cpu_s() - busy - (children_cpu_s() - ours)) / wall
    return result


def summarise(runs: list[dict]) -> dict:
    """One (mode, ranks): the best run (least seconds per step; noise on a shared machine only
    adds time) with its breakdown per step, and the median over the runs."""
    best = min(runs, key=lambda r: r["seconds_per_step"])
    med = statistics.median(r["seconds_per_step"] for r in runs)
    steps = best["steps"]
    return {"ranks": best["ranks"], "grid": best["grid"], "runs": len(runs),
            "seconds_per_step": best["seconds_per_step"], "seconds_per_step_median": med,
            "samples_per_s": best["samples_per_s"], "samples_per_s_median": best["batch"] / med,
            "step_s_min": min(r["step_s_min"] for r in runs), "step_s_p25": best["step_s_p25"],
            "comm_wait_share": best["comm_wait_share"],
            "comm_wait_share_median": statistics.median(r["comm_wait_share"] for r in runs),
            "data_share": best["data_share"],
            "per_rank_s_per_step": {part: [v / steps for v in best["per_rank_s"][part]] for part in PARTS},
            "comm_by_layer_s_per_step": {name: [v / steps for v in values]
                                         for name, values in best["comm_by_layer_s"].items()},
            "foreign_cores_during": [r["foreign_cores_during"] for r in runs]}


def compare(one: dict, two: dict) -> dict:
    """Parallel efficiency T1 / (2 T2) of 2 ranks over 1, at the best runs and at medians."""
    return {"ranks1": one, "ranks2": two,
            "parallel_efficiency": one["seconds_per_step"] / (2 * two["seconds_per_step"]),
            "parallel_efficiency_median": one["seconds_per_step_median"] / (2 * two["seconds_per_step_median"]),
            "parallel_efficiency_fastest_step": one["step_s_min"] / (2 * two["step_s_min"]),
            "comm_wait_share_2ranks": two["comm_wait_share"], "data_share_1rank": one["data_share"],
            "data_share_2ranks": two["data_share"]}


def main(args: argparse.Namespace) -> None:
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    runs = []
    for i in range(args.repeats):
        order = args.ranks if i % 2 == 0 else args.ranks[::-1]
        for mode in MODES:
            for ranks in order:
                run = launch(args, ranks, "train", mode)
                print(f"round {i + 1}/{args.repeats} {mode:<14} {ranks} rank(s): {run['seconds_per_step'] * 1e3:7.1f}"
                      f" ms/step {run['samples_per_s']:7.1f} samples/s  comm share {run['comm_wait_share']:.2f}"
                      f"  (other processes: {run['foreign_cores_during']:.2f} cores)",
                      flush=True)
                runs.append(run)
    data = launch(args, 2, "data")
    runs.append(data)
    elapsed = time.perf_counter() - t_start

    train_runs = [r for r in runs if r["kind"] == "train"]
    result = {
        **header("train"),
        "mpi": data["mpi"],
        "thread_env": {var: "1" for var in THREAD_VARS},
        "config": args.config,
        "overrides": args.set,
        "batch": train_runs[0]["batch"],
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "loadavg_1min_start_end": [load_start[0], os.getloadavg()[0]],
        "seconds": elapsed,
    }
    if len(args.ranks) == 2 and args.ranks[1] == 2 * args.ranks[0]:
        for mode in MODES:
            one, two = (summarise([r for r in train_runs if r["mode"] == mode and r["ranks"] == n])
                        for n in args.ranks)
            result[mode] = compare(one, two)
    result["data_path"] = {"ranks": data["ranks"], **{name: {k: v for k, v in case.items() if k != "times_s"}
                                                      for name, case in data["cases"].items()}}
    result["runs"] = runs
    result["notes"] = (
        "seconds_per_step, samples_per_s and the breakdowns: the best run (least elapsed time of `steps` "
        "steps between barriers; other processes on a shared machine only add time), *_median: the "
        "median over the runs; parallel_efficiency = T1 / (2 T2) at the best runs, "
        "parallel_efficiency_median at the medians, parallel_efficiency_fastest_step at the fastest "
        "single steps (a step's time: its slowest rank's; the least disturbed by other load). "
        "foreign_cores_during: cores other processes kept "
        "busy during each launch (/proc/stat less this driver's children). comm: wall time "
        "inside exchange begin/end (not hidden by compute, includes waiting for a neighbour); compute: "
        "the rest of the step less data (holds the loss allgather). comm_wait_share: max over ranks of "
        "comm / elapsed. data_path: median over batches of the largest per-rank time, 2 ranks; "
        "scatter_transfer_s = root_draws_scatters_s - root_draw_only_s.")

    print(f"\ntraining {args.config}, batch {result['batch']}, {args.steps} steps after {args.warmup}, "
          f"{args.repeats} round(s), best runs (medians in brackets); {data['mpi']}; {elapsed:.0f} s")
    for mode in MODES:
        if mode in result:
            r = result[mode]
            one, two = r["ranks1"], r["ranks2"]
            comm2 = ", ".join(f"{c * 1e3:.1f}" for c in two["per_rank_s_per_step"]["comm"])
            comp2 = ", ".join(f"{c * 1e3:.1f}" for c in two["per_rank_s_per_step"]["compute"])
            data1 = one["per_rank_s_per_step"]["data"][0]
            t1, t2 = one["seconds_per_step"] * 1e3, two["seconds_per_step"] * 1e3
            print(f"{mode:<14} 1 rank {one['samples_per_s']:6.1f} samples/s ({t1:.1f} ms, data {data1 * 1e3:.1f})"
                  f"  2 ranks {two['samples_per_s']:6.1f} ({t2:.1f} ms)"
                  f"  efficiency {r['parallel_efficiency']:.2f} [{r['parallel_efficiency_median']:.2f}]  comm share "
                  f"{two['comm_wait_share']:.2f} [{two['comm_wait_share_median']:.2f}]")
            print(f"{'':<14} fastest single steps: 1 rank {one['step_s_min'] * 1e3:.1f} ms, 2 ranks "
                  f"{two['step_s_min'] * 1e3:.1f} ms, efficiency {r['parallel_efficiency_fastest_step']:.2f}")
            print(f"{'':<14} 2 ranks, ms/step per rank: comm [{comm2}] compute [{comp2}] data "
                  f"[{', '.join(f'{d * 1e3:.1f}' for d in two['per_rank_s_per_step']['data'])}]")
    for name, case in result["data_path"].items():
        if name != "ranks":
            print(f"data {name} at {data['ranks']} ranks: each rank draws its share "
                  f"{case['each_rank_draws_share_s'] * 1e3:.1f} ms, every rank draws all "
                  f"{case['every_rank_draws_all_s'] * 1e3:.1f} ms, "
                  f"root draws + scatter {case['root_draws_scatters_s'] * 1e3:.1f} ms (draw "
                  f"{case['root_draw_only_s'] * 1e3:.1f}, transfer {case['scatter_transfer_s'] * 1e3:.1f})")
    write_result(args.out, result)


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.worker is None:
        main(ARGS)
    else:
        out = (train_worker if ARGS.worker == "train" else data_worker)(ARGS)
        if out is not None:
            print(json.dumps(out), flush=True)
