"""How does face selectivity grow with training steps, input size, the share of faces in the
data and the number of distinct faces? Train the demo's network one factor at a time away
from it (and the faces configuration once), run `cots neurons` on each, and record the best
neuron's held-out accuracy beside its random controls: on the bundled held-out LFW set and,
with ``--second-set``, on a set that is not LFW (the unaligned faces `cots crops` cuts).

Run (2 ranks per run, runs one after another; about an hour on 2 cores, most of it the
faces configuration and the third stage at 200 x 200):

    python benchmarks/bench_selectivity.py --second-set /data/unaligned   # results/selectivity.json
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
    # how many distinct faces the unlabelled stream holds (the demo: all 70 that the held-out 30 leave)
    "train_faces": [(n, [f"data.train_faces={n}"]) for n in (3, 10, 30)],
    # the faces configuration itself (configs/faces.toml: 200 x 200, about 15 minutes of training)
    "faces_config": [(200, [])],
}
#: factors trained from another configuration than the demo
CONFIGS = {"faces_config": "configs/faces.toml"}


def run(cmd: list[str], timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def scores(summary: dict[str, Any]) -> dict[str, Any]:
    """The trained network's held-out figures and its three controls', from a neurons.json."""
    models = {r["model"]: r for r in summary["results"]}
    row: dict[str, Any] = {"images": summary["images"], "selective_neuron_found": summary["selective_neuron_found"]}
    for name, key in (("trained network", "trained"), ("same network, random weights", "random_weights"),
                      ("random linear filters on the input", "random_linear"), ("all-negative guess", "guess")):
        r = models[name]
        row[key] = {"heldout": r["heldout_accuracy"], "interval95": r["interval95"],
                    "oracle": (r.get("oracle") or {}).get("accuracy")}
    row["trained_minus_random_weights"] = row["trained"]["heldout"] - row["random_weights"]["heldout"]
    row["trained_minus_guess"] = row["trained"]["heldout"] - row["guess"]["heldout"]
    return row


def measure(factor: str, value: Any, sets: list[str], folder: Path, second: Path | None) -> dict[str, Any]:
    """Train the demo (or the factor's configuration) with ``sets`` at 2 ranks, analyse it at 2
    ranks on the bundled held-out set and, if given, on ``second``; the figures."""
    out = folder / f"{factor}-{value}"
    mpiexec = [str(BIN / "mpiexec"), "-n", "2"]
    start = time.perf_counter()
    train = [*mpiexec, str(BIN / "cots"), "train", CONFIGS.get(factor, "configs/demo.toml"), "--out", str(out),
             "--fresh", "--quiet", "--set", "train.heldout_every=0", "--set", "train.log_every=50"]
    for s in sets:
        train += ["--set", s]
    run(train, 3600)
    trained = time.perf_counter() - start
    neurons = [*mpiexec, str(BIN / "cots"), "neurons", str(out), "--quiet", "--stimulus-steps", "20", "--best", "1",
               "--pool", "200"]
    run(neurons, 1800)
    summary = json.loads((out / "neurons.json").read_text())
    first = summary.get("first_stage_filters", {})
    row = {"factor": factor, "value": value, "config": CONFIGS.get(factor, "configs/demo.toml"), "sets": sets,
           "train_seconds": round(trained, 1), "analysis_seconds": round(time.perf_counter() - start - trained, 1),
           "layer": [summary["stage"], summary["layer"], summary["shape"]],
           "filters_learned": summary.get("filters_learned"),
           "osi_median": {k: first.get(k, {}).get("osi_median") for k in ("trained", "initial")},
           "locality_median": {k: first.get(k, {}).get("locality_median") for k in ("trained", "initial")},
           **scores(summary)}
    if second is not None:
        run([*neurons, "--positives", str(second / "positives"), "--negatives", str(second / "negatives"),
             "--out", str(out / "second-set")], 1800)
        row["second_set"] = scores(json.loads((out / "second-set" / "neurons.json").read_text()))
    return row


def line(row: dict[str, Any]) -> str:
    """The trained figure, its interval and the controls, in one line."""
    t = row["trained"]
    return (f"trained {t['heldout']:.1%} ({t['interval95'][0]:.1%}-{t['interval95'][1]:.1%}), random weights "
            f"{row['random_weights']['heldout']:.1%}, guess {row['guess']['heldout']:.1%}, linear "
            f"{row['random_linear']['heldout']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FACTORS), action="append", help="factors to run (default all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "selectivity.json")
    parser.add_argument("--append", action="store_true", help="add the runs to those already in --out")
    parser.add_argument("--second-set", type=Path, metavar="DIR",
                        help="also score every run on DIR/positives and DIR/negatives (for example the unaligned "
                             "faces of `cots crops`, docs/analysis.md)")
    args = parser.parse_args()
    if args.second_set is not None and not all((args.second_set / k).is_dir() for k in ("positives", "negatives")):
        parser.error(f"expected --second-set to hold positives/ and negatives/, got {args.second_set}")
    result = header("selectivity") | {"base": "configs/demo.toml (2 ranks, greedy, 2 stages)", "runs": [],
                                      "second_set": None if args.second_set is None else
                                      json.loads((args.second_set / "crops.json").read_text())
                                      if (args.second_set / "crops.json").is_file() else str(args.second_set)}
    if args.append and args.out.is_file():
        earlier = json.loads(args.out.read_text())
        result["runs"] = earlier["runs"]
        result["earlier"] = earlier.get("earlier", []) + [{k: earlier[k] for k in ("date", "command") if k in earlier}]
    with tempfile.TemporaryDirectory(prefix="cots-selectivity-") as tmp:
        for factor in args.only or sorted(FACTORS):
            for value, sets in FACTORS[factor]:
                row = measure(factor, value, sets, Path(tmp), args.second_set)
                result["runs"].append(row)
                print(f"{factor}={value}: {line(row)}; OSI {row['osi_median']['trained']:.2f}; "
                      f"{row['train_seconds']:.0f} s" + (f"; second set {line(row['second_set'])}"
                                                         if "second_set" in row else ""), flush=True)
                write_result(args.out, result)  # after every run: a long study keeps what it measured


if __name__ == "__main__":
    main()
