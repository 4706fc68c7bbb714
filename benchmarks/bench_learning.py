"""Does the first stage learn? Train a configuration's first stage at several seeds (and,
with ``--sweep``, at several settings) and measure its filters against the same network at
its initial weights: median orientation selectivity (OSI), locality, and the share of a
held-out batch's energy the stage fails to reconstruct.

Run (one process; runs ``--jobs`` trainings at once, one thread each, on one rank each):

    python benchmarks/bench_learning.py                               # the demo, seeds 0 1 2: learning.json
    python benchmarks/bench_learning.py --seeds 0 --steps 500 --out /tmp/learning.json
    python benchmarks/bench_learning.py --sweep sweep.json --seeds 0 --out /tmp/sweep.json

A sweep file is a JSON list of settings, each a list of ``--set`` assignments, for example
``[["model.stages.0.lambda=0.3"], ["model.stages.0.lambda=1", "train.lr=0.005"]]``. Settings are
to be chosen by these unsupervised measures (OSI, locality, reconstruction), never by the
held-out face accuracy, which stays an honest test (docs/model.md).

OSI and locality are those of :mod:`models.analysis.orientation` over every first-stage
filter. ``unexplained`` is ``sum (xhat - x)^2 / sum x^2`` on the data source's batch at step
2^40 (never trained on), after the run's whitening. This measures learning, not speed: the
seconds are recorded, but runs share the machine's cores.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy loads: one thread per training

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from machine_info import header, write_result  # noqa: E402 (beside this script)

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "learning.json"
HELDOUT_STEP = 2**40
HELDOUT_IMAGES = 64
CURVE_EVERY = 100  # the loss curve in the JSON: the mean loss of each block of this many steps
OSI_TARGET, RATIO_TARGET = 0.45, 2.0  # issue 15: median OSI >= 0.45 and >= 2x the initial weights'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.toml", help="training configuration (TOML)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration override for every run (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model.seed of each run")
    parser.add_argument("--steps", type=int, default=None, help="first-stage steps (default: train.steps)")
    parser.add_argument("--sweep", type=Path, default=None, help="JSON list of settings (lists of KEY=VALUE)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (one core each)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    return parser.parse_args()


def _unexplained(network: Any, images: Any) -> float:
    stage = network.stages[0]
    x = network.input_array(images)
    losses, _ = stage.forward(x)  # what it saves for a backward is dropped at the next forward
    energy = float((x.local.astype("float64") ** 2).sum()) / images.shape[3]
    return losses.reconstruction / energy


def one_run(config_path: str, sets: list[str], seed: int, steps: int | None) -> dict[str, Any]:
    """Train stage 0 of ``config_path`` (with ``sets`` and ``model.seed=seed``) on this process."""
    import numpy as np

    from distarray import comm
    from models.analysis.orientation import filter_measures
    from models.config import load_config
    from models.training.trainer import Trainer

    config = load_config(ROOT / config_path, list(sets) + [f"model.seed={seed}"])
    steps = config.train.steps if steps is None else min(int(steps), config.train.steps)
    trainer = Trainer(config, world=comm.self_comm())
    encoder = trainer.network.stages[0].encoder
    heldout = trainer.dataset.batch(HELDOUT_STEP, HELDOUT_IMAGES)  # (H, W, C, N)

    def filters() -> Any:
        f = np.asarray(encoder.filters(), dtype=np.float64)  # (oh, ow, M, k, k, C)
        return f.reshape((-1,) + f.shape[3:])

    initial, initial_unexplained = filter_measures(filters()), _unexplained(trainer.network, heldout)
    start = time.perf_counter()
    records = trainer.run(until=steps)
    seconds = time.perf_counter() - start
    trained = filter_measures(filters())
    tail = records[-min(50, len(records)):]
    return {
        "seed": seed, "sets": list(sets), "steps": steps, "seconds": round(seconds, 1),
        "trained": trained.as_dict() | {"unexplained": _unexplained(trainer.network, heldout)},
        "initial": initial.as_dict() | {"unexplained": initial_unexplained},
        "osi_ratio": trained.osi_median / initial.osi_median,
        "final_loss": {key: statistics.fmean(r["stages"]["0"][key] for r in tail)
                       for key in ("reconstruction", "sparsity")},
        "loss_curve": {"every": CURVE_EVERY, "mean_loss": [
            statistics.fmean(r["loss"] for r in records[i: i + CURVE_EVERY]) for i in range(0, len(records), CURVE_EVERY)]},
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting: the seeds' median OSI and locality, trained and initial, and the verdict."""
    out = {}
    for sets in {tuple(r["sets"]) for r in runs}:
        mine = [r for r in runs if tuple(r["sets"]) == sets]
        osi = [r["trained"]["osi_median"] for r in mine]
        osi0 = [r["initial"]["osi_median"] for r in mine]
        out[" ".join(sets) or "(as configured)"] = {
            "seeds": [r["seed"] for r in mine], "osi_median": osi, "osi_median_initial": osi0,
            "locality_median": [r["trained"]["locality_median"] for r in mine],
            "locality_median_initial": [r["initial"]["locality_median"] for r in mine],
            "unexplained": [r["trained"]["unexplained"] for r in mine],
            "meets_target": all(o >= OSI_TARGET and o >= RATIO_TARGET * o0 for o, o0 in zip(osi, osi0)),
        }
    return out


def main(args: argparse.Namespace) -> None:
    settings = [[]] if args.sweep is None else json.loads(args.sweep.read_text())
    if not isinstance(settings, list) or not all(isinstance(s, list) for s in settings):
        raise SystemExit(f"expected --sweep as a JSON list of lists of KEY=VALUE, got {args.sweep}")
    jobs = [(args.config, args.set + list(s), seed, args.steps) for s in settings for seed in args.seeds]
    print(f"bench_learning: {len(jobs)} run(s) of {args.config}, {args.jobs} at once", flush=True)
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for run in pool.map(one_run, *zip(*jobs)):
            runs.append(run)
            t, i = run["trained"], run["initial"]
            print(f"  seed {run['seed']} {' '.join(run['sets']) or '(as configured)'}: OSI {t['osi_median']:.3f} "
                  f"(initial {i['osi_median']:.3f}, x{run['osi_ratio']:.2f}), locality {t['locality_median']:.3f} "
                  f"({i['locality_median']:.3f}), unexplained {t['unexplained']:.3f} ({i['unexplained']:.3f}), "
                  f"{run['seconds']:.0f} s", flush=True)
    result = {**header("learning"), "config": args.config, "sets": args.set, "target": {
        "osi_median": OSI_TARGET, "ratio_to_initial": RATIO_TARGET}, "summary": summary(runs), "runs": runs,
        "seconds": round(time.perf_counter() - start, 1),
        "notes": "first stage only, one rank per run; OSI at each filter's preferred spatial frequency, over "
                 "8 orientations, 4 phases and every channel pattern (models/analysis/orientation.py); locality: "
                 "share of energy in the best quarter-area window; unexplained: reconstruction error over input "
                 "energy on a held-out batch (step 2^40), whitened input"}
    write_result(args.out, result)


if __name__ == "__main__":
    main(parse_args())
