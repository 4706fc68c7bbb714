"""The CPU-side self-check of `make gpu-check` (tools/gpu_check.py): its logic, with the GPU
parts skipped where no GPU is visible, and its wiring through every step with a NumPy
stand-in for CuPy (tests/gpu/standin; proves the commands, markers and JSON fit, not a GPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # its dataclass looks itself up there
_spec.loader.exec_module(gpu_check)

GPU_STEPS = ["tests_1rank", "tests_2ranks", "bench_layers", "bench_halo", "train"]


def run_tool(*args: str, standin: bool = False, timeout: float = 600) -> tuple[int, dict, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "gpu" / "standin")) if standin else None
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), *args], capture_output=True,
                          text=True, env=env, timeout=timeout)
    out = Path(args[args.index("--out") + 1])
    return proc.returncode, json.loads((out / "gpu-check.json").read_text()), proc.stdout + proc.stderr


def test_without_a_gpu_every_gpu_step_says_why(tmp_path):
    rc, report, text = run_tool("--out", str(tmp_path), "--allow-no-gpu")
    if report["gpu"]:
        pytest.skip("this machine has a GPU: make gpu-check runs for real")
    assert rc == 0
    assert report["steps"]["probe"]["status"] == "passed"
    assert report["steps"]["probe"]["figures"]["python"]
    for name in GPU_STEPS:
        assert report["steps"][name]["status"] == "skipped"
        assert "no GPU visible" in report["steps"][name]["reason"]
    assert "tests_1rank" in text and "JSON:" in text  # the table is printed
    rc, _, text = run_tool("--out", str(tmp_path))
    assert rc == 2 and "no GPU visible, so nothing was checked" in text


def test_every_step_runs_with_the_numpy_standin(tmp_path):
    """The whole pipeline but the layer benchmark (too slow on a CPU), on the demo network."""
    rc, report, text = run_tool("--out", str(tmp_path), "--train-config", "configs/demo.toml",
                                "--only", "tests_1rank", "tests_2ranks", "bench_halo", "train", standin=True)
    steps = report["steps"]
    assert rc == 0, text
    assert report["gpu"] and steps["probe"]["figures"]["gpu"] == "NumPy stand-in"
    for name in ("tests_1rank", "tests_2ranks", "bench_halo", "train"):
        assert steps[name]["status"] == "passed", steps[name]["output_tail"]
    assert " passed" in steps["tests_1rank"]["output_tail"] and " failed" not in steps["tests_1rank"]["output_tail"]
    assert steps["bench_halo"]["figures"]["verified"] and steps["bench_halo"]["figures"]["ranks"] == 2
    assert steps["train"]["figures"]["steps"] == 2 * 3  # the demo's two stages, 3 steps each
    assert steps["bench_layers"]["status"] == "skipped"


def test_a_step_records_failure_timeout_and_figures(tmp_path):
    env = dict(os.environ)
    ok = gpu_check.Step("ok", [sys.executable, "-c", "print('X {\"a\": 1}')"], 30, marker="X")
    assert gpu_check.run_step(ok, env)["figures"] == {"a": 1}
    bad = gpu_check.run_step(gpu_check.Step("bad", [sys.executable, "-c", "raise SystemExit(3)"], 30), env)
    assert bad["status"] == "failed" and bad["rc"] == 3
    slow = gpu_check.run_step(gpu_check.Step("slow", [sys.executable, "-c", "import time; time.sleep(5)"], 0.5), env)
    assert slow["status"] == "timeout"
    missing = gpu_check.run_step(gpu_check.Step("missing", [str(tmp_path / "nothing")], 5), env)
    assert missing["status"] == "failed" and "could not start" in missing["output_tail"]


def test_missing_mpi_without_wheels_is_skipped_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "WHEELS", tmp_path / "none")
    python, record = gpu_check.mpi_environment(sys.executable, {"mpi": None, "pytest_mpi": False}, tmp_path, {})
    assert python == sys.executable
    assert record["status"] == "skipped" and "make gpu-wheels" in record["reason"]


def test_the_plan_names_files_that_exist(tmp_path):
    args = gpu_check.parse_args(["--out", str(tmp_path)])
    steps = gpu_check.plan_steps(sys.executable, tmp_path, args)
    assert [s.name for s in steps] == GPU_STEPS
    assert (ROOT / "tests" / "gpu").is_dir() and (ROOT / "benchmarks" / "bench_gpu.py").is_file()
    assert (ROOT / args.train_config).is_file()
    assert all(0 < s.timeout <= 240 for s in steps)


def test_the_budget_skips_what_it_cannot_fit(tmp_path):
    rc, report, _ = run_tool("--out", str(tmp_path), "--train-config", "configs/demo.toml", "--budget", "5",
                             "--only", "tests_1rank", "train", standin=True)
    assert rc == 0
    assert any("out of time" in report["steps"][n].get("reason", "") for n in ("tests_1rank", "train"))


def test_missing_mpi_gets_the_carried_wheels(tmp_path, monkeypatch):
    """The path the GPU image takes (its mpi4py has no MPI library, pytest-mpi is absent):
    a new environment with the wheels that `make gpu-wheels` fetches, over this one's packages."""
    wheels = tmp_path / "wheels"
    fetch = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                            str(wheels), "pytest-mpi", "mpich", "mpi4py"], capture_output=True, text=True, timeout=300)
    if fetch.returncode != 0:
        pytest.skip(f"no wheels to carry (pip download failed: {fetch.stderr.strip().splitlines()[-1:]})")
    monkeypatch.setattr(gpu_check, "WHEELS", wheels)
    import site
    probe = {"mpi": None, "pytest_mpi": False, "site_packages": site.getsitepackages()}
    python, record = gpu_check.mpi_environment(sys.executable, probe, tmp_path, dict(os.environ))
    assert record["status"] == "passed", record
    assert python != sys.executable
    check = "from mpi4py import MPI; import pytest_mpi, numpy; print(MPI.Get_library_version().split()[0])"
    out = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("MPICH"), out.stderr
    assert (Path(python).parent / "mpiexec").exists()
