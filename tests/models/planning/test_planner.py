"""The planner and machine profile (serial): memory accounting against the bytes the model
really allocates, the fit verdict and grid suggestions, the cost model, and `cots plan`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

import distarray as da
from distarray import comm
from models.config import load_config, parse_config
from models.optim import make_optimizer
from models.planning.planner import format_plan, plan_network, suggest_grids
from models.planning.profile import Rates
from models.build import build_network

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def small(optimizer="sgd", dtype="float32", state="float32"):
    return parse_config({"model": {"input": [40, 36, 3], "seed": 1, "dtype": dtype, "stages": [
        {"k": 8, "maps": 6, "pool": 3, "lcn": 3}, {"k": 5, "maps": 4, "pool": 2, "lcn": 3}]},
        "train": {"batch": 16, "optimizer": optimizer, "mode": "joint", "state_dtype": state}})


@pytest.mark.parametrize("optimizer,dtype,stages,state", [
    ("sgd", "float32", [0, 1], "float32"), ("adagrad", "float64", [1], "float32"), ("sgd", "float64", [0], "float32"),
    ("adagrad", "float32", [0, 1], "bfloat16"), ("sgd", "float32", [1], "float16")])
def test_parameter_memory_is_what_the_model_allocates(optimizer, dtype, stages, state):
    cfg = small(optimizer, dtype, state)
    build_network(cfg, da.ProcessGrid((1, 1), comm=comm.self_comm()))  # one-time allocations (caches) first
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        net = build_network(cfg, da.ProcessGrid((1, 1), comm=comm.self_comm()))
        opt = make_optimizer(optimizer, net.parameters(), state_dtype=state)
        weights = tracemalloc.get_traced_memory()[0] - before
        grads = net.gradients(stages)  # what a step training `stages` allocates
        opt.ensure_state(list(grads))
        allocated = tracemalloc.get_traced_memory()[0] - before
        names, grad_bytes = list(grads), sum(g.local.nbytes for g in grads.values())
        del grads
        net.release_gradients(keep=[])  # the trainer moving on to another stage
        opt.release(names)
        released = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    memory = plan_network(cfg, 1, stages=stages).worst.memory
    planned = memory["weights"] + memory["gradients"] + memory["optimizer"]
    assert abs(allocated - planned) <= 0.01 * planned, (allocated, planned)
    assert abs(weights - memory["weights"]) <= 0.01 * memory["weights"], (weights, memory["weights"])
    assert abs(released - weights) <= 0.01 * weights and opt.state == {}
    assert memory["gradients"] == grad_bytes
    assert memory["optimizer"] == (memory["gradients"] // 2 if state != "float32" else memory["gradients"])


def test_le2012_sizes_and_fit():
    cfg = load_config(ROOT / "configs" / "le2012.toml")
    plan = plan_network(cfg, 2, device_gib=6)
    assert plan.total_params == 2 * 1_144_863_072
    assert plan.fits is False and plan.worst.memory["weights"] == plan.worst.params * 4
    # greedy: the plan is the phase needing the most memory; it holds one stage's gradients
    assert [p["stages"] for p in plan.phases] == [[0], [1], [2]]
    assert plan.stages == [1] and plan.worst.memory["total"] == max(p["memory"] for p in plan.phases)
    stage1 = sum(l.params for l in plan.worst.layers if l.name.startswith("stage1."))
    assert plan.worst.memory["gradients"] == plan.worst.memory["optimizer"] == stage1 * 4
    joint = plan_network(cfg, 2, stages=[0, 1, 2])
    assert joint.worst.memory["gradients"] == joint.worst.params * 4
    found = suggest_grids(cfg, 6)
    assert found and all(b <= 6 * 2**30 for _, _, b in found)
    assert found[0][0] == min(n for n, _, _ in found) and plan_network(cfg, found[0][0] - 1).worst.memory[
        "total"] > 6 * 2**30
    assert plan_network(cfg, 1).fits is None


def test_bad_grid_is_refused():
    with pytest.raises(ValueError, match=r"grid of 2 dimensions with 4 ranks, got \[3, 1\]"):
        plan_network(small(), 4, grid=(3, 1))


def test_cost_model_adds_compute_memory_and_messages():
    rates = Rates(1e9, 1e9, 1e8, 1e-5)  # the four rates alone: every kernel at gemm_flops
    plan = plan_network(small(), 2, rates=rates)
    rank = plan.per_rank[0]
    t = rank.seconds
    assert t["comm"] == pytest.approx(rank.halo_bytes / 1e8 + rank.messages * 1e-5)
    assert t["compute"] == pytest.approx(t["kernels"] + t["windows"] + t["overhead"]) and t["overhead"] == 0
    assert t["total"] == pytest.approx(t["compute"] + t["memory"] + t["comm"])
    assert plan.seconds == max(r.seconds["total"] for r in plan.per_rank)
    assert "predicted step" in format_plan(plan, rates)
    with pytest.raises(ValueError, match="positive rates"):
        Rates(0, 1, 1, 0)


def test_cost_model_arithmetic_on_given_work():
    rates = Rates(1e9, 2e9, 1e8, 1e-5, kernel_flops={"forward": [[100, 1e9], [10000, 4e9]]},
                  window_seconds={"pool_forward": 1e-9}, call_seconds=1e-4, data_seconds=(1e-3, 1e-8))
    assert rates.kernel_rate("forward", 1000) == pytest.approx(2.5e9)  # halfway in log fan-in
    assert rates.kernel_rate("forward", 10) == 1e9 and rates.kernel_rate("forward", 10**6) == 4e9  # clamped
    assert rates.kernel_rate("weight_grad", 1000) == 1e9  # not measured: gemm_flops
    work = {"kernels": {("forward", 1000): 5e9, ("weight_grad", 100): 1e9},
            "windows": {("pool_forward", 10): 1e6, ("norm_forward", 5): 1e6}, "calls": 10,
            "samples": 4, "sample_values": 1e5, "copy_bytes": 1e9,
            "optimizer": "adagrad", "update_params": 3e9 / (16 * 4),  # 16 passes of 4 bytes: 3e9 bytes
            "halo_bytes": 1e7, "messages": 6}
    t = rates.predict(work, itemsize=4)
    assert t["kernels"] == pytest.approx(2.0 + 1.0)
    assert t["windows"] == pytest.approx(1e6 * 1e-9 * 2 + 1e6 * 2 * 5 * 2 * 4 / 2e9)  # measured (scaled), fallback
    assert t["overhead"] == pytest.approx(10 * 1e-4 + 4 * (1e-3 + 1e-8 * 1e5))
    assert t["memory"] == pytest.approx(4e9 / 2e9) and t["comm"] == pytest.approx(0.1 + 6e-5)
    measured = Rates(1e9, 2e9, 1e8, 1e-5, update_seconds={"adagrad": 2e-9, "sgd": 1e-9})
    t = measured.predict({**work, "update_params": 1e9}, itemsize=4)
    assert t["memory"] == pytest.approx(1e9 / 2e9 + 1e9 * 2e-9)  # copies by bandwidth, the update as measured
    stored = Rates(1e9, 2e9, 1e8, 1e-5, update_seconds={"adagrad": 2e-9, "adagrad/bfloat16/stochastic": 5e-9})
    t = stored.predict({**work, "update_params": 1e9, "optimizer": "adagrad/bfloat16/stochastic"}, itemsize=4)
    assert t["memory"] == pytest.approx(1e9 / 2e9 + 1e9 * 5e-9)  # the 16-bit state's own rate
    t = measured.predict({**work, "update_params": 1e9, "optimizer": "adagrad/float16/nearest"}, itemsize=4)
    assert t["memory"] == pytest.approx(1e9 / 2e9 + 1e9 * 2e-9)  # an older profile: its float32 rate


def test_profile_round_trip(tmp_path):
    rates = Rates(2e10, 1e10, 5e9, 2e-6, source="test")
    assert Rates.load(rates.save(tmp_path / "p.json")) == rates
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="cots plan --calibrate"):
        Rates.load(tmp_path / "bad.json")


def cots_plan(*args):
    return subprocess.run([str(BIN / "cots"), "plan", *args], capture_output=True, text=True, timeout=120,
                          env=ENV, cwd=ROOT)


def test_cli_plan_json_and_suggestion(tmp_path):
    out = tmp_path / "plan.json"
    done = cots_plan("configs/le2012.toml", "--ranks", "2", "--gpu-mem", "4", "--gemm-gflops", "50",
                     "--mem-gbps", "20", "--net-gbps", "5", "--latency-us", "2", "--json", str(out))
    assert done.returncode == 1, done.stderr  # does not fit: a script can test the status
    assert "DOES NOT FIT" in done.stdout and "does not fit: " in done.stdout and "predicted step" in done.stdout
    saved = json.loads(out.read_text())
    assert saved["total_params"] == 2 * 1_144_863_072 and saved["fits"] is False
    assert len(saved["per_rank"]) == 2 and saved["rates"]["source"] == "flags"


def test_cli_calibrate_then_plan(tmp_path):
    profile = tmp_path / "profile.json"
    done = cots_plan("--calibrate", "--calibrate-mib", "4", "--profile", str(profile))
    assert done.returncode == 0 and profile.is_file(), done.stderr
    rates = Rates.load(profile)
    assert rates.gemm_flops > 1e8 and rates.memory_bw > 1e8
    assert sorted(rates.kernel_flops) == ["forward", "input_grad", "weight_grad"]
    assert all([k for k, _ in points] == [75, 192, 288, 972, 2592] and all(r > 1e7 for _, r in points)
               for points in rates.kernel_flops.values())
    assert sorted(rates.window_seconds) == ["norm_forward", "pool_backward", "pool_forward"]
    assert 0 < rates.call_seconds < 0.1 and rates.data_seconds[0] + rates.data_seconds[1] > 0
    assert sorted(rates.update_seconds) == sorted(f"{o}{s}" for o in ("adagrad", "sgd") for s in (
        "", "/bfloat16/nearest", "/bfloat16/stochastic", "/float16/nearest"))
    assert all(0 < v < 1e-6 for v in rates.update_seconds.values())
    assert 10 * 2**20 < rates.base_bytes < 2**31  # the interpreter, libraries and images
    done = cots_plan("configs/demo.toml", "--ranks", "3", "--grid", "1x3", "--profile", str(profile))
    assert done.returncode == 0 and "grid [1, 3]" in done.stdout and "predicted step" in done.stdout


@pytest.mark.parametrize("args,message", [
    (["configs/demo.toml"], "expected a configuration and --ranks N"),
    (["configs/demo.toml", "--ranks", "2", "--grid", "3x1"], "with 2 ranks, got [3, 1]"),
    (["configs/demo.toml", "--ranks", "2", "--gemm-gflops", "5"], "expected all of --gemm-gflops"),
    (["--calibrate", "--calibrate-mib", "0"], "expected --calibrate-mib > 0, got 0"),
    (["configs/le2012.toml", "--ranks", "2", "--gpu-mem", "-1"], "expected --gpu-mem > 0, got -1"),
    (["configs/le2012.toml", "--ranks", "0"], "expected --ranks > 0, got 0"),
    (["configs/demo.toml", "--ranks", "2", "--batch", "0"], "expected --batch > 0, got 0"),
    (["configs/demo.toml", "--ranks", "2", "--grid", "twobyone"], "expected --grid AxB (for example 2x4), got 'twobyone'"),
])
def test_cli_bad_input(args, message):
    done = cots_plan(*args)
    assert done.returncode == 2 and message in done.stderr


def test_cli_bad_input_under_mpiexec_is_one_line_from_rank_0():
    done = subprocess.run([str(BIN / "mpiexec"), "-n", "2", str(BIN / "cots"), "plan", "configs/le2012.toml",
                           "--ranks", "2", "--gpu-mem", "-1"], capture_output=True, text=True, timeout=120,
                          env=ENV, cwd=ROOT)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and lines == ["cots plan: error: expected --gpu-mem > 0, got -1"], done.stderr


def test_sixteen_bit_state_and_by_stage_gradients_in_the_plan():
    cfg = load_config(ROOT / "configs" / "le2012.toml", ["train.mode=joint"])
    plain = plan_network(cfg, 2).worst
    low = plan_network(load_config(ROOT / "configs" / "le2012.toml", [
        "train.mode=joint", "train.state_dtype=bfloat16", "train.joint_update=by_stage"]), 2).worst
    assert low.memory["optimizer"] * 2 == plain.memory["optimizer"] == plain.params * 4
    per_stage = [sum(l.params for l in low.layers if l.name.startswith(f"stage{s}.")) for s in range(3)]
    assert low.memory["gradients"] == max(per_stage) * 4 < plain.memory["gradients"]
    assert low.memory["weights"] == plain.memory["weights"]
