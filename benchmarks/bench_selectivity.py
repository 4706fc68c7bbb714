"""How does face selectivity grow with training steps, input size and the share of faces in
the data? Train the demo's network one factor at a time away from it, run `cots neurons` on
each, and record the best neuron's held-out accuracy beside its random controls.

Run (2 ranks per run, runs one after another; about 25 minutes on 2 cores):

    python benchmarks/bench_selectivity.py                        # results/selectivity.json
    python benchmarks/bench_selectivity.py --only steps --out /tmp/s.json
    python benchmarks/bench_selectivity.py --only seed_at_64 --append

This is a measurement, not a search: no setting here is chosen by it (settings are chosen by
the unsupervised measures of bench_learning.py; docs/model.md). Every run records the trained
network's held-out accuracy and 95% interval, the same network at its random initial weights,
random linear filters on the input, the all-negative guess, the oracle figure, and the first
stage's median OSI and locality against the initial weights'. One seed per setting: the
intervals say how much one run can tell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine_info import header, write_result  # noqa: E402 (beside this script)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: factor -> the settings tried, each a list of --set assignments (the demo is steps 2000,
#: input 48, face_share 0.1: it appears once, in the steps factor)
FACTORS: dict[str, list[tuple[Any, list[str]]]] = {
    "steps": [(n, [f"train.steps={n}", f"train.checkpoint_every={max(n // 2, 1)}"])
              for n in (250, 500, 1000, 2000, 4000)],
    "input": [(n, [f"model.input=[{n},{n},1]"]) for n in (40, 64)],
    "face_share": [(f, [f"data.face_share={f}"]) for f in (0.03, 0.3)],
    "input_96": [(96, ["model.input=[96,96,1]"])],
    # a third stage, a copy of the second (no setting of its own chosen), at Le et al.'s 200 x 200: does
    # a larger receptive field bring back what 200 x 200 lost against 64 and 96?
    "depth_at_200": [(3, ["model.input=[200,200,1]", "model.stages=[" + ", ".join(
        ['{k=8, maps=8, stride=3, pool=2, lcn=3, lambda=0.8, tied=true, norm="encoder"}']
        + ['{k=4, maps=8, pool=2, lcn=3, lambda=0.8, tied=true, norm="encoder"}'] * 2) + "]"])],
    # the 64 x 64 run again at other seeds (weights, samples, split): how much of its figure is one draw
    "seed_at_64": [(s, ["model.input=[64,64,1]", f"model.seed={s}"]) for s in (1, 2)],
}


def run(cmd: list[str], timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def measure(factor: str, value: Any, sets: list[str], folder: Path) -> dict[str, Any]:
    """Train the demo with ``sets`` at 2 ranks, analyse it at 2 ranks; the figures."""
    out = folder / f"{factor}-{value}"
    mpiexec = [str(BIN / "mpiexec"), "-n", "2"]
    start = time.perf_counter()
    train = [*mpiexec, str(BIN / "cots"), "train", "configs/demo.toml", "--out", str(out), "--fresh", "--quiet",
             "--set", "train.heldout_every=0", "--set", "train.log_every=50"]
    for s in sets:
        train += ["--set", s]
    run(train, 3600)
    trained = time.perf_counter() - start
    run([*mpiexec, str(BIN / "cots"), "neurons", str(out), "--quiet", "--stimulus-steps", "20", "--best", "1",
         "--pool", "200"], 1800)
    summary = json.loads((out / "neurons.json").read_text())
    models = {r["model"]: r for r in summary["results"]}
    first = summary.get("first_stage_filters", {})
    row = {"factor": factor, "value": value, "sets": sets, "train_seconds": round(trained, 1),
           "analysis_seconds": round(time.perf_counter() - start - trained, 1),
           "layer": [summary["stage"], summary["layer"], summary["shape"]],
           "selective_neuron_found": summary["selective_neuron_found"],
           "filters_learned": summary.get("filters_learned"),
           "osi_median": {k: first.get(k, {}).get("osi_median") for k in ("trained", "initial")},
           "locality_median": {k: first.get(k, {}).get("locality_median") for k in ("trained", "initial")}}
    for name, key in (("trained network", "trained"), ("same network, random weights", "random_weights"),
                      ("random linear filters on the input", "random_linear"), ("all-negative guess", "guess")):
        r = models[name]
        row[key] = {"heldout": r["heldout_accuracy"], "interval95": r["interval95"],
                    "oracle": (r.get("oracle") or {}).get("accuracy")}
    row["trained_minus_random_weights"] = row["trained"]["heldout"] - row["random_weights"]["heldout"]
    row["trained_minus_guess"] = row["trained"]["heldout"] - row["guess"]["heldout"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FACTORS), action="append", help="factors to run (default all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "selectivity.json")
    parser.add_argument("--append", action="store_true", help="add the runs to those already in --out")
    args = parser.parse_args()
    result = header("selectivity") | {"base": "configs/demo.toml (2 ranks, greedy, 2 stages)", "runs": []}
    if args.append and args.out.is_file():
        earlier = json.loads(args.out.read_text())
        result["runs"] = earlier["runs"]
        result["earlier"] = earlier.get("earlier", []) + [{k: earlier[k] for k in ("date", "command") if k in earlier}]
    with tempfile.TemporaryDirectory(prefix="cots-selectivity-") as tmp:
        for factor in args.only or sorted(FACTORS):
            for value, sets in FACTORS[factor]:
                row = measure(factor, value, sets, Path(tmp))
                result["runs"].append(row)
                t = row["trained"]
                print(f"{factor}={value}: trained {t['heldout']:.1%} ({t['interval95'][0]:.1%}-{t['interval95'][1]:.1%}), "
                      f"random weights {row['random_weights']['heldout']:.1%}, guess {row['guess']['heldout']:.1%}, "
                      f"linear {row['random_linear']['heldout']:.1%}; OSI {row['osi_median']['trained']:.2f}; "
                      f"{row['train_seconds']:.0f} s", flush=True)
                write_result(args.out, result)  # after every run: a long study keeps what it measured


if __name__ == "__main__":
    main()
