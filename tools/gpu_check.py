"""`make gpu-check`: the CuPy path on a machine with a GPU, unattended, in one run of about
8 minutes at most, every figure in one JSON file.

Run from a fresh copy of the repository on the GPU machine:

    make gpu-check                          # python3, JSON to $OUT/gpu-check.json or ./gpu-check.json
    python3 tools/gpu_check.py --out DIR    # the same
    python3 tools/gpu_check.py --allow-no-gpu --out DIR   # the CPU-side self-check: GPU steps skipped

It needs only the machine's python3 with NumPy, SciPy, CuPy, pytest and scikit-image (the
GPU image has them) and, where MPI is missing, the wheels that `make gpu-wheels` downloads
into ``.gpu-wheels/`` on a machine with network access (pytest-mpi, mpich, mpi4py: about 16
MB, carried with the checkout). Steps, each in its own process with a wall-clock limit,
each recorded (status, seconds, the tail of its output, and its figures):

1. ``probe``: Python, NumPy, CuPy, the GPU (name, memory), ``nvidia-smi -L``, and whether
   mpi4py loads an MPI library;
2. ``mpi``: if mpi4py does not load, or pytest-mpi is missing, a virtual environment gets
   the carried wheels and sees the machine's own packages (CuPy) after them, through a .pth;
3. ``tests_1rank``: the GPU tests (tests/gpu, marker ``gpu``) in one process;
4. ``tests_2ranks``: the MPI GPU tests at 2 ranks (both ranks may share one GPU);
5. ``bench_layers``: benchmarks/bench_gpu.py (LC kernels against cuBLAS SGEMM);
6. ``bench_halo``: benchmarks/bench_gpu.py --halo at 2 ranks (device halo against host MPI);
7. ``train``: Le et al.'s le2012 network (configs/le2012.toml, 2.29 billion parameters)
   trained greedily on the GPU at 1 rank for ``--train-steps`` steps per stage: seconds per
   step, the loss, GPU memory.

Each step has its own limit and none may run past ``--budget`` (480 s) from the start; steps
left when it is spent are skipped and say so. Without a GPU, steps 3-7 are skipped and say why, and the exit status is 2 unless
``--allow-no-gpu`` (the CPU-side self-check that ``make test`` runs). The exit status is 1
if any step that ran failed or ran out of time. A table is printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".gpu-wheels"
MPI_WHEELS = ("pytest_mpi", "mpich", "mpi4py")
TAIL = 4000  # characters of each step's output kept in the JSON

PROBE = r"""
import json, platform, site, subprocess, sys
out = {"python": platform.python_version(), "executable": sys.executable, "site_packages": site.getsitepackages()}
try:
    import numpy; out["numpy"] = numpy.__version__
except Exception as e: out["numpy"] = f"missing: {e}"
try:
    import cupy
    out["cupy"] = cupy.__version__
    out["gpus"] = cupy.cuda.runtime.getDeviceCount()
except Exception as e:
    out["gpus"] = 0; out["cupy_error"] = f"{type(e).__name__}: {e}"[:300]
try:
    p = cupy.cuda.runtime.getDeviceProperties(0)
    out["gpu"] = p["name"].decode(errors="replace")
    out["gpu_memory_gib"] = round(p["totalGlobalMem"] / 2**30, 1)
except Exception as e:
    out["gpu_error"] = f"{type(e).__name__}: {e}"[:300]
try:
    from mpi4py import MPI
    out["mpi"] = MPI.Get_library_version().splitlines()[0]
except Exception as e:
    out["mpi"] = None; out["mpi_error"] = f"{type(e).__name__}: {e}"[:300]
try:
    import pytest_mpi; out["pytest_mpi"] = True
except Exception: out["pytest_mpi"] = False
try:
    out["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
except Exception as e: out["nvidia_smi"] = f"not run: {type(e).__name__}"
print("PROBE " + json.dumps(out))
"""

TRAIN = r"""
import json, time
from models.config import load_config
from models.training.trainer import Trainer
import cupy
config = load_config({config!r}, overrides={overrides!r})
t0 = time.perf_counter()
trainer = Trainer(config)
built = time.perf_counter() - t0
records = trainer.run()
pool = cupy.get_default_memory_pool()
times = [r["seconds"]["step"] for r in records]
losses = [{{s: v["loss"] for s, v in r["stages"].items()}} for r in records]
print("TRAIN " + json.dumps({{"build_seconds": built, "steps": len(records), "step_seconds": times,
                             "losses": losses, "gpu_pool_gib": pool.total_bytes() / 2**30}}))
"""


@dataclass
class Step:
    """One step: a command, its limit, and what it needs."""

    name: str
    argv: list[str]
    timeout: float
    needs_gpu: bool = True
    needs_mpi: bool = False
    json_out: Path | None = None
    marker: str | None = None  # a line prefix whose JSON the output carries


def run_step(step: Step, env: dict[str, str]) -> dict:
    """Run ``step`` in its own process; returns its record (never raises)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(step.argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=step.timeout)
        output, rc = proc.stdout + proc.stderr, proc.returncode
        status = "passed" if rc == 0 else "failed"
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        rc, status = None, "timeout"
    except OSError as exc:
        output, rc, status = f"could not start {step.argv[0]}: {exc}", None, "failed"
    record = {"status": status, "rc": rc, "seconds": round(time.perf_counter() - start, 2),
              "command": " ".join(step.argv)[:500], "output_tail": output[-TAIL:]}
    if step.marker:
        for line in output.splitlines():
            if line.startswith(step.marker + " "):
                record["figures"] = json.loads(line[len(step.marker) + 1:])
    if step.json_out is not None and step.json_out.exists():
        record["figures"] = json.loads(step.json_out.read_text())
    return record


def skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason, "seconds": 0.0}


def mpi_environment(python: str, probe: dict, out: Path, env: dict[str, str]) -> tuple[str, dict]:
    """The Python to run MPI steps with: this one if mpi4py and pytest-mpi load, else a
    virtual environment over the system's packages with the carried wheels."""
    if probe.get("mpi") and probe.get("pytest_mpi"):
        return python, {"status": "passed", "reason": "mpi4py and pytest-mpi already load", "seconds": 0.0}
    wheels = sorted(p for p in WHEELS.glob("*.whl") if p.name.lower().startswith(MPI_WHEELS)) if WHEELS.is_dir() else []
    if not wheels:
        return python, skipped(f"mpi4py or pytest-mpi missing and no wheels in {WHEELS} (run make gpu-wheels)")
    venv = out / "gpu-venv"
    vpy = str(venv / "bin" / "python")
    start = time.perf_counter()
    # The machine's python3 may itself be a virtual environment (the GPU image's is), so
    # --system-site-packages would not see its CuPy: a .pth file adds its site-packages
    # after the new environment's own, where the carried mpi4py then comes first.
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    cmds = [[python, "-m", "venv", "--without-pip", str(venv)],
            [python, "-m", "pip", "--python", vpy, "install", "--no-index", "--no-deps", *map(str, wheels)],
            [vpy, "-c", purelib]]
    log = ""
    for cmd in cmds:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
        log += proc.stdout + proc.stderr
        if proc.returncode != 0:
            return python, {"status": "failed", "rc": proc.returncode, "seconds": round(time.perf_counter() - start, 2),
                            "command": " ".join(cmd), "output_tail": log[-TAIL:]}
    parents = [p for p in probe.get("site_packages", []) if Path(p).is_dir()]
    (Path(proc.stdout.strip()) / "gpu_check_parent.pth").write_text("".join(p + "\n" for p in parents))
    return vpy, {"status": "passed", "seconds": round(time.perf_counter() - start, 2),
                 "reason": f"installed {[w.name for w in wheels]} over {parents}", "output_tail": log[-TAIL:]}


def plan_steps(python: str, out: Path, args: argparse.Namespace) -> list[Step]:
    """The GPU steps, in order (commands only; nothing runs here)."""
    beside = Path(python).parent / "mpiexec"
    mpiexec = str(beside) if beside.exists() else (shutil.which("mpiexec") or "mpiexec")
    two = [mpiexec, "-n", "2", python, "-m", "mpi4py"]
    overrides = [f"train.steps={args.train_steps}", "run.backend=cupy", "train.heldout_every=0"]
    return [
        Step("tests_1rank", [python, "-m", "mpi4py", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--with-mpi",
                             "-m", "gpu", "tests/gpu"], 120, needs_mpi=True),
        Step("tests_2ranks", two + ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--with-mpi", "-m", "gpu and mpi",
                                    "tests/gpu"], 120, needs_mpi=True),
        Step("bench_layers", [python, "benchmarks/bench_gpu.py", "--out", str(out / "bench_gpu.json")], 150,
             json_out=out / "bench_gpu.json"),
        Step("bench_halo", two + ["benchmarks/bench_gpu.py", "--halo", "--out", str(out / "halo_gpu.json")], 90,
             needs_mpi=True, json_out=out / "halo_gpu.json"),
        Step("train", [python, "-c", TRAIN.format(config=str(ROOT / args.train_config), overrides=overrides)],
             240, marker="TRAIN"),
    ]


def print_table(report: dict) -> None:
    print(f"\n{'step':<14}{'status':<9}{'seconds':>9}  note")
    for name, rec in report["steps"].items():
        note = rec.get("reason") or ""
        figures = rec.get("figures") or {}
        if name == "bench_layers" and figures:
            note = (f"best LC fwd+bwd {figures.get('lc_fwd_bwd_fraction_best', float('nan')):.3f} of cuBLAS SGEMM "
                    f"({figures.get('sgemm_gflops', float('nan')):.0f} GFLOP/s)")
        elif name == "bench_halo" and figures:
            note = (f"halo {figures.get('halo_gbs', float('nan')):.2f} GB/s, {figures.get('halo_to_raw', float('nan')):.2f} "
                    f"of host MPI; CUDA-aware {figures.get('cuda_aware')}")
        elif name == "train" and figures:
            secs = figures.get("step_seconds") or [float("nan")]
            note = f"{figures.get('steps')} steps, median {sorted(secs)[len(secs) // 2]:.2f} s/step"
        elif rec.get("status") in ("failed", "timeout"):
            note = (rec.get("output_tail") or "").strip().splitlines()[-1:] or [""]
            note = note[0][:90]
        print(f"{name:<14}{rec['status']:<9}{rec.get('seconds', 0):9.1f}  {note}")
    print(f"JSON: {report['json']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT
    parser.add_argument("--out", type=Path, default=default_out, help="folder for gpu-check.json and step files")
    parser.add_argument("--python", default=sys.executable, help="the Python with CuPy (default: this one)")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps per stage")
    parser.add_argument("--train-config", default="configs/le2012.toml", help="the network trained (repository path)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for the whole check: a step gets at most what is left, later ones are skipped")
    parser.add_argument("--allow-no-gpu", action="store_true", help="exit 0 when no GPU is visible (self-check)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these GPU steps (by name)")
    args = parser.parse_args(argv)
    if args.train_steps < 1:
        parser.error(f"expected --train-steps >= 1, got {args.train_steps}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    started = time.time()
    report: dict = {"benchmark": "gpu_check", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                    "json": str(out / "gpu-check.json"), "steps": {}}
    probe_step = Step("probe", [args.python, "-c", PROBE], 60, needs_gpu=False, marker="PROBE")
    report["steps"]["probe"] = run_step(probe_step, env)
    probe = report["steps"]["probe"].get("figures", {})
    has_gpu = bool(probe.get("gpus"))
    python = args.python
    if has_gpu:
        python, report["steps"]["mpi"] = mpi_environment(args.python, probe, out, env)
    else:
        report["steps"]["mpi"] = skipped("no GPU visible: nothing to run MPI for")
    mpi_ok = report["steps"]["mpi"]["status"] == "passed"
    for step in plan_steps(python, out, args):
        if args.only is not None and step.name not in args.only:
            report["steps"][step.name] = skipped("not asked for (--only)")
        elif step.needs_gpu and not has_gpu:
            report["steps"][step.name] = skipped(f"no GPU visible ({probe.get('cupy_error') or 'CuPy sees 0 devices'})")
        elif step.needs_mpi and not mpi_ok:
            report["steps"][step.name] = skipped("no working MPI (see the mpi step)")
        elif time.time() - started > args.budget - 10:
            report["steps"][step.name] = skipped(f"out of time: the {args.budget:.0f} s budget is spent")
        else:
            step.timeout = min(step.timeout, args.budget - (time.time() - started))
            print(f"gpu-check: {step.name} (limit {step.timeout:.0f} s) ...", flush=True)
            report["steps"][step.name] = run_step(step, env)
    report["seconds"] = round(time.time() - started, 1)
    report["gpu"] = has_gpu
    Path(report["json"]).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    if any(rec["status"] in ("failed", "timeout") for rec in report["steps"].values()):
        return 1
    if not has_gpu and not args.allow_no_gpu:
        print("gpu-check: no GPU visible, so nothing was checked (see the probe step)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
