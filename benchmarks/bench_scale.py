"""Train a network at full size (default: Le et al.'s le2012, 2.29 billion parameters) and
measure what it takes: peak resident memory per rank, seconds per step, bytes per parameter,
the loss falling, and the planner's predictions for the same run beside them.

Run (one process; it launches each rank count under mpiexec, one thread per rank):

    python benchmarks/bench_scale.py                                    # le2012 at 2 ranks: scale.json
    python benchmarks/bench_scale.py --ranks 1 2 --steps 6              # also 1 rank (planner check)
    python benchmarks/bench_scale.py --config configs/demo.toml --ranks 1 2 --out /tmp/scale_demo.json
    python benchmarks/bench_scale.py --quick                            # smoke test on the demo config

For each rank count the driver first measures the machine on that many ranks (``cots plan
--calibrate``, in its own processes, so the planner's rates come from the same session and the
worker's memory figures stay clean). A worker (``--worker``, under ``mpiexec -n N python -m
mpi4py``) loads that profile, then builds
``models.training.trainer.Trainer(config, run_dir=None)`` and trains ``--steps`` steps per phase: in
greedy mode a phase per stage (stage 0, then 1, ...), in joint mode one phase. Before each phase
the kernel's peak-RSS counter is reset (``/proc/self/clear_refs``), so every phase has its own
peak (VmHWM). Per phase it records, gathered from every rank: the peak RSS, the loss at each
step, the step times (a step's time is its slowest rank's; the phase's figure is the median
over its steps after the first, which allocates that stage's gradients and optimiser state),
and the planner's figures for the same configuration, grid and stage with the calibrated rates
(:func:`models.planning.planner.plan_network`): the busiest rank's memory and the slowest rank's
predicted step time.

``bytes_per_param`` is the peak RSS summed over the ranks divided by the parameter count
(encoders and decoders). The driver writes every worker's record and a summary to
``benchmarks/results/scale.json`` (top-level keys from the run with the most ranks).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from machine_info import machine, write_result  # beside this script (sys.path[0] when run as a file)
from bench_train import THREAD_VARS, launcher, settle

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "scale.json"
DEFAULT_CONFIG = "configs/le2012.toml"
GIB = 2**30


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="training configuration (TOML)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration override, as `cots train --set` (repeatable)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[2], help="rank counts to run")
    parser.add_argument("--steps", type=int, default=30, help="training steps per phase (per stage when greedy)")
    parser.add_argument("--timeout", type=float, default=3000.0, help="seconds allowed per worker launch")
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds to wait, before each launch, for other processes to leave the cores idle")
    parser.add_argument("--mpiexec", default=None, help="MPI launcher (default: next to this Python)")
    parser.add_argument("--quick", action="store_true", help="smoke test: the demo config, 3 steps per phase")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.config, args.steps, args.settle = "configs/demo.toml", 3, 0.0
    if args.steps < 2 or min(args.ranks) < 1:
        raise ValueError(f"expected steps >= 2 and ranks >= 1, got steps {args.steps}, ranks {args.ranks}")
    return args


# -- the worker (under mpiexec) ------------------------------------------------------------------
def status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS: now; VmHWM: peak), KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where Linux refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(args: argparse.Namespace) -> dict | None:
    """Collective: calibrate, build, train phase by phase; rank 0 returns the record."""
    from distarray import comm
    from models.config import load_config
    from models.planning.planner import plan_network
    from models.planning.profile import Rates
    from models.training.trainer import Trainer

    world = comm.world()
    config = load_config(ROOT / args.config, args.set + [f"train.steps={args.steps}"])
    baseline_kib = status_kib("VmRSS")  # interpreter, NumPy, mpi4py, the packages
    rates = Rates.load(args.profile)
    peak_reset = reset_peak()
    start = time.perf_counter()
    trainer = Trainer(config, run_dir=None, world=world)
    comm.barrier(world)
    init_s = time.perf_counter() - start
    built_kib = status_kib("VmRSS")
    phases = [[s] for s in range(len(trainer.network))] if trainer.greedy else [list(range(len(trainer.network)))]
    records = []
    for p, stages in enumerate(phases):
        trainer.prepare(stages)  # the previous phase's gradients and state go before the peak is reset
        reset_peak()
        steps = []
        for step in range(p * args.steps if trainer.greedy else 0, (p + 1) * args.steps):
            assert trainer.stages_at(step) == stages
            record = trainer.train_step(step)
            steps.append((record["loss"], record["seconds"]["step"], record["seconds"]["data"]))
        records.append({"stages": stages, "steps": steps, "peak_kib": status_kib("VmHWM"), "rss_kib": status_kib("VmRSS")})
    gathered = comm.allgather(world, {"baseline_kib": baseline_kib, "built_kib": built_kib, "phases": records})
    if world.Get_rank() != 0:
        return None
    params = trainer.network.parameter_count()
    out_phases = []
    for p, stages in enumerate(phases):
        per_rank = [g["phases"][p] for g in gathered]
        times = [max(r["steps"][i][1] for r in per_rank) for i in range(args.steps)]  # slowest rank per step
        losses = [step[0] for step in per_rank[0]["steps"]]
        plan = plan_network(config, world.Get_size(), trainer.grid.dims, rates=rates, stages=stages)
        slowest = max(plan.per_rank, key=lambda r: r.seconds["total"])  # what a synchronous step waits for
        peak = max(r["peak_kib"] for r in per_rank) * 1024
        seconds = statistics.median(times[1:])
        out_phases.append({
            "stages": stages, "loss": losses, "loss_first": losses[0], "loss_last": losses[-1],
            "step_s": times, "seconds_per_step": seconds,
            "data_s_per_step": statistics.median(max(r["steps"][i][2] for r in per_rank) for i in range(1, args.steps)),
            "peak_rss_bytes_per_rank": [r["peak_kib"] * 1024 for r in per_rank], "peak_rss_bytes": peak,
            "planned_bytes_per_rank": plan.worst.memory["total"], "planned_memory": plan.worst.memory,
            "planned_seconds_per_step": plan.seconds, "planned_seconds": slowest.seconds,
            "memory_ratio": plan.worst.memory["total"] / peak, "time_ratio": plan.seconds / seconds,
        })
    peak = max(ph["peak_rss_bytes"] for ph in out_phases)
    peak_sum = max(sum(ph["peak_rss_bytes_per_rank"]) for ph in out_phases)
    return {
        "config": args.config, "overrides": args.set, "ranks": world.Get_size(), "grid": list(trainer.grid.dims),
        "mode": config.train.mode, "optimizer": config.train.optimizer, "batch": trainer.batch,
        "dtype": config.model.dtype, "steps_per_phase": args.steps, "params": params,
        "init_s": init_s, "baseline_rss_bytes": [g["baseline_kib"] * 1024 for g in gathered],
        "built_rss_bytes": [g["built_kib"] * 1024 for g in gathered], "peak_reset": peak_reset,
        "peak_rss_gib_per_rank": peak / GIB, "peak_rss_gib_all_ranks": peak_sum / GIB,
        "bytes_per_param": peak_sum / params["total"], "rates": asdict(rates),
        "phases": out_phases, "mpi": comm.library_version(), "loadavg_1min": os.getloadavg()[0],
    }


# -- the driver ----------------------------------------------------------------------------------
def run_ranks(args: argparse.Namespace, ranks: int, command: list[str]) -> str:
    """Run ``command`` under mpiexec on ``ranks`` ranks, one thread each; its stdout."""
    command = [launcher(args), "-n", str(ranks), *command]
    env = dict(os.environ, **{var: "1" for var in THREAD_VARS})
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {args.timeout:g} s: {' '.join(command)}") from None
    if done.returncode:
        raise RuntimeError(f"failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return done.stdout


def launch(args: argparse.Namespace, ranks: int) -> dict:
    """Calibrate on ``ranks`` ranks (its own processes: the worker's memory stays clean), then
    run one worker with that profile; returns the JSON line rank 0 printed."""
    profile = args.out.parent / f".profile-{ranks}.json"
    settle(args.settle)
    run_ranks(args, ranks, [str(Path(sys.executable).parent / "cots"), "plan", "--calibrate", "--profile", str(profile)])
    command = [sys.executable, "-m", "mpi4py", str(Path(__file__).resolve()), "--worker", "--config", args.config,
               "--steps", str(args.steps), "--profile", str(profile)]
    for assignment in args.set:
        command += ["--set", assignment]
    started = time.perf_counter()
    lines = [line for line in run_ranks(args, ranks, command).splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the worker printed no result: {' '.join(command)}")
    result = json.loads(lines[-1])
    result["launch_s"] = time.perf_counter() - started
    profile.unlink()
    return result


def summary(run: dict) -> dict:
    """The issue's figures from one run (per phase where they differ by stage)."""
    phases = run["phases"]
    key = lambda ph: ",".join(str(s) for s in ph["stages"])  # noqa: E731
    out = {"params": run["params"]["total"], "encoder_params": run["params"]["encoder"],
           "peak_rss_gib_per_rank": run["peak_rss_gib_per_rank"], "peak_rss_gib_all_ranks": run["peak_rss_gib_all_ranks"],
           "bytes_per_param": run["bytes_per_param"],
           "seconds_per_step": {key(ph): ph["seconds_per_step"] for ph in phases},
           "loss_first": {key(ph): ph["loss_first"] for ph in phases},
           "loss_last": {key(ph): ph["loss_last"] for ph in phases},
           "planner_memory_ratio": {key(ph): ph["memory_ratio"] for ph in phases},
           "planner_time_ratio": {key(ph): ph["time_ratio"] for ph in phases}}
    if Path(run["config"]).stem == "le2012":
        out["le2012_params"] = out["params"]
    return out


def main(args: argparse.Namespace) -> None:
    runs = {}
    for ranks in args.ranks:
        print(f"{args.config}: {ranks} rank(s), {args.steps} steps per phase ...", flush=True)
        runs[str(ranks)] = run = launch(args, ranks)
        for ph in run["phases"]:
            print(f"  stages {ph['stages']}: loss {ph['loss_first']:.4g} -> {ph['loss_last']:.4g}, "
                  f"{ph['seconds_per_step']:.3f} s/step (planned {ph['planned_seconds_per_step']:.3f}), peak "
                  f"{ph['peak_rss_bytes'] / GIB:.2f} GiB/rank (planned {ph['planned_bytes_per_rank'] / GIB:.2f})",
                  flush=True)
        print(f"  built in {run['init_s']:.1f} s; {run['bytes_per_param']:.2f} bytes per parameter", flush=True)
    top = runs[str(max(args.ranks))]
    result = {"benchmark": "scale", "date": datetime.date.today().isoformat(), "machine": machine(),
              **summary(top), "ranks": top["ranks"], "summary_by_ranks": {r: summary(v) for r, v in runs.items()},
              "runs": runs}
    write_result(args.out, result, indent=1)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        record = worker(arguments)
        if record is not None:
            print(json.dumps(record), flush=True)
    else:
        main(arguments)
