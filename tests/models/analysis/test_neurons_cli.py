"""`cots neurons` end to end under mpiexec: a report with every image it references, image
folders as the labelled set, and bad input answered with one message and exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distarray import comm
from models.analysis.report_html import embedded_images, referenced_files
from models.config import parse_config
from models.training.checkpoints import latest_checkpoint
from models.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def neurons(ranks: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "mpiexec"), "-n", str(ranks), str(BIN / "cots"), "neurons", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny trained run (on this process alone)."""
    path = tmp_path_factory.mktemp("neurons") / "tiny"
    config = parse_config({
        "model": {"input": [16, 16, 3], "seed": 1, "whiten": 5, "stages": [
            {"k": 5, "maps": 4, "pool": 2, "lcn": 3, "tied": True, "norm": "encoder"},
            {"k": 3, "maps": 3, "pool": 2, "lcn": 3}]},
        "train": {"steps": 4, "batch": 8, "lr": 0.01},
    })
    Trainer(config, path, world=comm.self_comm()).run()
    return path


def test_report_at_two_ranks(run):
    done = neurons(2, str(run), "--pool", "40", "--stimulus-steps", "10", "--best", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report: {run / 'report.html'}" in done.stdout
    for model in ("trained network", "same network, random weights", "random linear filters", "all-negative guess"):
        assert model in done.stdout
    files = referenced_files(run / "report.html")
    names = {f.name for f in files}
    assert {"top_images_1.png", "top_images_2.png", "histogram.png", "stimulus.png", "filters.png",
            "filters_initial.png", "reconstructions.png", "reconstructions_stage1.png", "invariance.png", "stimuli_stage0.png", "stimuli_stage1.png",
            "loss.png", "curves.png"} <= names
    assert embedded_images(run / "report.html") == [f.read_bytes() for f in files]  # one file carries them all
    summary = json.loads((run / "neurons.json").read_text())
    assert set(summary["filters_learned"]) == {"oriented", "localised"}
    assert "no selective neuron found" in done.stdout or "selective neuron found" in done.stdout
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    html = (run / "report.html").read_text()
    assert "Held-out accuracy" in html and "Oracle accuracy" in html and "http" not in html
    summary = json.loads((run / "neurons.json").read_text())
    assert summary["images"]["positives"] == 30 and summary["images"]["negatives"] == 60
    assert [r["model"] for r in summary["results"]][0] == "trained network"
    assert summary["verdict"].endswith(f"locality {summary['first_stage_filters']['trained']['locality_median']:.2f} "
                                       f"(initial {summary['first_stage_filters']['initial']['locality_median']:.2f})")
    assert summary["verdict"].startswith("selective" if summary["selective_neuron_found"] else "no selective")
    assert {kind: len(c["relative"]) for kind, c in summary["invariance"].items()} == {
        "translation": 7, "scale": 7, "rotation": 7}
    assert [s["stage"] for s in summary["stage_stimuli"]] == [0, 1]
    assert all(len(s["values"]) == len(s["positions"]) == 8 for s in summary["stage_stimuli"])
    for when in ("trained", "initial"):
        assert summary["first_stage_filters"][when]["count"] == 12 * 12 * 4  # every first-stage filter
        assert 0 <= summary["first_stage_filters"][when]["osi_median"] <= 1


def test_image_folders_and_another_layer(run, tmp_path):
    rng = np.random.default_rng(0)
    for name, count in (("pos", 7), ("neg", 9)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    out = tmp_path / "out"
    done = neurons(2, str(run), "--positives", str(tmp_path / "pos"), "--negatives", str(tmp_path / "neg"),
                   "--out", str(out), "--stage", "0", "--layer", "pool", "--pool", "0", "--stimulus-steps", "3",
                   "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == ""
    summary = json.loads((out / "neurons.json").read_text())
    assert (summary["stage"], summary["layer"]) == (0, "pool")
    assert summary["images"]["positives"] == 7 and summary["images"]["negatives"] == 9
    assert all(f.is_file() for f in referenced_files(out / "report.html"))


@pytest.mark.parametrize("args,message", [
    (["--stage", "5"], "expected a stage in range(2), got 5"),
    (["--positives", "somewhere"], "expected both --positives and --negatives"),
    (["--best", "0"], "expected best >= 1"),
])
def test_bad_arguments_exit_2_with_one_message(run, args, message):
    done = neurons(2, str(run), "--quiet", *args)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("cots neurons: error:") == 1 and message in done.stderr


def test_a_directory_without_checkpoints(tmp_path):
    done = neurons(2, str(tmp_path))
    assert done.returncode == 2 and "expected a run directory with checkpoints" in done.stderr


def test_a_save_interrupted_before_its_final_rename(run, tmp_path):
    """The newest save's shards and manifest were written (its hidden ``.tmp-`` sibling is
    complete) but the job died before renaming it in: `cots neurons` reads it, as
    `cots train --resume` does."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    newest = latest_checkpoint(copy)
    os.rename(newest, newest.parent / f".{newest.name}.tmp-0100")
    assert not newest.exists() and latest_checkpoint(copy) == newest
    done = neurons(2, str(copy), "--pool", "0", "--stimulus-steps", "2", "--best", "1", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((copy / "neurons.json").read_text())
    assert summary["step"] == 8 and summary["run"] == str(copy)
