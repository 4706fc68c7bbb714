"""How far apart are the weights trained at 1, 2, 3 and 4 ranks (and after a resume at another
rank count)? The measurement behind docs/training.md#determinism.

Run (one process; it launches the trainings itself under mpiexec, one thread per rank):

    python benchmarks/bench_rank_invariance.py                      # demo, 200 steps: ~2 minutes
    python benchmarks/bench_rank_invariance.py --steps 50 --out /tmp/inv.json

Each launch trains ``--config`` (stage 0, greedy; float32 as configured, and float64 with
``--set model.dtype="float64"``) for ``--steps`` steps from the same seed and writes the
final weights (gathered on rank 0) to an .npz. Another launch trains half the steps at 2
ranks, then resumes at 3 ranks to the end. The driver compares every run with the 1-rank run:
the largest difference relative to the largest weight of the array (``max_rel``), the share
of weights that differ at all, and whether the runs are bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine_info import header, write_result  # beside this script (sys.path[0] when run as a file)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "rank_invariance.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.toml")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--worker", nargs=3, metavar=("DTYPE", "RUN_DIR", "NPZ"), help=argparse.SUPPRESS)
    parser.add_argument("--until", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def worker(args: argparse.Namespace) -> None:
    """Collective: train (or resume) and write the final weights on rank 0."""
    import numpy as np

    from distarray import comm
    from models.config import load_config
    from models.training.trainer import Trainer

    dtype, run_dir, npz = args.worker
    config = load_config(ROOT / args.config, [f"train.steps={args.steps}", f'model.dtype="{dtype}"',
                                              "train.checkpoint_every=0"])
    trainer = Trainer(config, run_dir=run_dir, prefetch=False)
    if args.resume:
        trainer.resume()
    trainer.run(until=args.until if args.until else args.steps)
    weights = {name: p.gather() for name, p in trainer.network.parameters().items() if name.startswith("stage0")}
    if comm.world().Get_rank() == 0 and (args.until is None or args.resume):
        np.savez(npz, **weights)


def launch(args: argparse.Namespace, ranks: int, dtype: str, run_dir: Path, npz: Path, *extra: str) -> None:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    command = [str(mpiexec), "-n", str(ranks), sys.executable, str(Path(__file__).resolve()), "--config", args.config,
               "--steps", str(args.steps), "--worker", dtype, str(run_dir), str(npz), *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"worker failed: {' '.join(command)}\n{done.stderr[-3000:]}")


def compare(a: Path, b: Path) -> dict:
    import numpy as np

    with np.load(a) as x, np.load(b) as y:
        rel = max(float(np.abs(x[n] - y[n]).max() / max(np.abs(x[n]).max(), 1e-30)) for n in x.files)
        differ = sum(int((x[n] != y[n]).sum()) for n in x.files) / sum(x[n].size for n in x.files)
        same = all(x[n].tobytes() == y[n].tobytes() for n in x.files)
    return {"max_rel": rel, "share_differing": differ, "bit_identical": same}


def main(args: argparse.Namespace) -> None:
    result = {**header("rank_invariance"), "config": args.config, "steps": args.steps, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dtype in ("float32", "float64"):
            files = {}
            for ranks in (1, 2, 3, 4):
                files[ranks] = tmp / f"{dtype}-{ranks}.npz"
                launch(args, ranks, dtype, tmp / f"run-{dtype}-{ranks}", files[ranks])
            resumed = tmp / f"{dtype}-2then3.npz"
            launch(args, 2, dtype, tmp / f"run-{dtype}-2then3", resumed, "--until", str(args.steps // 2))
            launch(args, 3, dtype, tmp / f"run-{dtype}-2then3", resumed, "--resume")
            again = tmp / f"{dtype}-2again.npz"
            launch(args, 2, dtype, tmp / f"run-{dtype}-2again", again)
            runs = {f"{r}_ranks": compare(files[1], files[r]) for r in (2, 3, 4)}
            runs["2_then_3_ranks"] = compare(files[1], resumed)
            runs["2_ranks_twice"] = compare(files[2], again)
            result["runs"][dtype] = runs
            for name, r in runs.items():
                print(f"{dtype} {name:>15}: max relative difference {r['max_rel']:.2e}, "
                      f"{100 * r['share_differing']:.1f}% of weights differ, bit-identical {r['bit_identical']}",
                      flush=True)
    result["notes"] = ("Each run compared with the 1-rank run (2_ranks_twice: two 2-rank runs with each other). "
                       "max_rel: the largest |difference| over the largest |weight|, array by array, the worst array.")
    write_result(args.out, result)


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.worker:
        worker(ARGS)
    else:
        main(ARGS)
