"""Neuron analysis at 1-4 ranks against the same analysis on one rank (COMM_SELF twin):
every rank scores its own neurons, and the neurons chosen, their accuracies, the stimuli and
the report do not depend on the number of ranks."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import comm as _comm
from models.analysis.activations import layer_activations, random_filter_activations
from models.analysis.run import analyse_run
from models.config import parse_config
from models.config import StageSpec
from models.network import Network
from models.analysis.neurons import evaluate, neuron_rows
from models.analysis.report_html import referenced_files
from models.analysis.stimulus import optimal_stimulus
from models.training.trainer import Trainer

from ...distarray.mpi_helpers import rank, size, world

pytestmark = pytest.mark.mpi

SHAPE = (14, 13, 2)
STAGES = [StageSpec(4, 3, 2, 3, eps=1e-3), StageSpec(3, 2, 2, 3, eps=1e-3)]


def network(comm) -> Network:
    dims = da.factor_grid(comm.Get_size(), SHAPE[:2])
    return Network(SHAPE, STAGES, da.ProcessGrid(dims, comm=comm), seed=3, dtype=np.float64)


def labelled(n=40):
    rng = np.random.default_rng(9)
    images = rng.standard_normal((n, *SHAPE))  # (N, H, W, C)
    labels = rng.random(n) < 0.4
    images[labels, 4:9, 4:9] += 1.0  # a weak blob: something to find
    return images, labels


@pytest.mark.parametrize("stage,layer", [(0, "filter"), (0, "norm"), (1, "pool"), (1, "norm")])
def test_activations_and_choices_equal_one_rank(stage, layer):
    net, twin = network(world()), network(_comm.self_comm())
    images, labels = labelled()
    acts, indices = layer_activations(net, images, stage, layer, batch=16)
    want, want_indices = layer_activations(twin, images, stage, layer, batch=16)
    every = _comm.allgather(world(), indices.tolist())
    assert sorted(i for part in every for i in part) == want_indices.tolist()  # each neuron on one rank
    np.testing.assert_array_equal(acts, want[indices])  # computed where it lives, bit for bit
    got = evaluate("m", acts, indices, labels, world(), seed=1, best=3)
    assert got == evaluate("m", want, want_indices, labels, _comm.self_comm(), seed=1, best=3)
    chosen = [c.index for c in got.best]
    np.testing.assert_array_equal(neuron_rows(acts, indices, chosen, world()), want[chosen])


def test_random_filters_split_over_ranks():
    images, labels = labelled()
    acts, indices = random_filter_activations(images, 100, 4, rank(), size())
    want, _ = random_filter_activations(images, 100, 4, 0, 1)
    np.testing.assert_array_equal(acts, want[indices])
    got = evaluate("linear", acts, indices, labels, world())
    assert got == evaluate("linear", want, np.arange(100), labels, _comm.self_comm())


def test_stimulus_equals_one_rank():
    net, twin = network(world()), network(_comm.self_comm())
    got = optimal_stimulus(net, [5, 11], 1, "norm", steps=20, seed=2)
    want = optimal_stimulus(twin, [5, 11], 1, "norm", steps=20, seed=2)
    np.testing.assert_allclose(got.history, want.history, rtol=1e-10)
    np.testing.assert_allclose(got.images, want.images, rtol=1e-8, atol=1e-12)


def test_analyse_run_equals_one_rank(shared_dir):
    """Train a tiny run here, analyse it at N ranks and on rank 0 alone: same table, same
    neurons; the report and every image it references exist."""
    cfg = parse_config({
        "model": {"input": [14, 13, 1], "seed": 2, "dtype": "float64", "whiten": 3, "stages": [
            {"k": 4, "maps": 3, "pool": 2, "lcn": 3, "eps": 1e-3, "tied": True, "norm": "encoder"},
            {"k": 3, "maps": 2, "pool": 2, "lcn": 0}]},
        "train": {"steps": 3, "batch": 6, "lr": 0.01},
        "data": {"source": "bundled", "face_share": 0.3},
    })
    Trainer(cfg, shared_dir / "run").run()
    got = analyse_run(shared_dir / "run", out=shared_dir / "n", pool=50, stimulus_steps=5, best=2, log=None)
    table = got.table_rows()
    assert [row[0] for row in table] == ["trained network", "same network, random weights",
                                         "random linear filters on the input", "all-negative guess"]
    assert got.trained.neurons == 5 * 4 * 2 and got.shape == (5, 4, 2) and (got.stage, got.layer) == (1, "pool")
    assert all(0 <= row[2] <= 1 for row in table) and table[3][2] == got.labelled.negatives / 90
    if rank() == 0:
        twin = analyse_run(shared_dir / "run", out=shared_dir / "n1", pool=50, stimulus_steps=5, best=2,
                           world=_comm.self_comm(), log=None)
        assert twin.table_rows() == table
        assert [r.as_dict() for r in twin.results] == [r.as_dict() for r in got.results]
        np.testing.assert_allclose(twin.stimulus.values, got.stimulus.values, rtol=1e-10)
        assert twin.first_stage == got.first_stage and twin.verdict() == got.verdict()
        assert set(got.invariance) == {"translation", "scale", "rotation"}
        for kind, curve in got.invariance.items():
            np.testing.assert_allclose(twin.invariance[kind]["response"], curve["response"], rtol=1e-10)
        assert len(got.reconstructions) == len(twin.reconstructions) >= 2  # one per stage
        for theirs, ours in zip(twin.reconstructions, got.reconstructions):
            np.testing.assert_allclose(theirs, ours, rtol=1e-10, atol=1e-12)
        files = referenced_files(got.report)
        assert len(files) >= 7 and all(f.is_file() and f.stat().st_size > 0 for f in files)
        assert (shared_dir / "n" / "neurons.json").is_file()
