"""The planner's shape-only counts against the real network at 1-4 ranks: every rank's
parameters, output shapes, input boxes and the elements its fetches receive."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from models.config import parse_config
from models.planning.planner import plan_network
from models.build import build_network

from ...distarray.mpi_helpers import rank, size, world

pytestmark = pytest.mark.mpi

BATCH = 5


def config(grid="auto"):
    return parse_config({
        "model": {"input": [23, 19, 2], "seed": 1, "stages": [
            {"k": 5, "maps": 3, "pool": 3, "lcn": 3}, {"k": 3, "maps": 2, "pool": 2, "lcn": 0, "stride": 2}]},
        "train": {"batch": BATCH},
        "run": {"grid": grid},
    })


@pytest.mark.parametrize("grid", ["auto", "column"])
def test_counts_equal_the_real_network(grid):
    cfg = config("auto" if grid == "auto" else [1, size()])
    plan = plan_network(cfg, size())
    net = build_network(cfg, da.ProcessGrid(plan.grid, comm=world()))
    mine = {layer.name: layer for layer in plan.per_rank[rank()].layers}
    for s, (stage, norm) in enumerate(zip(net.stages, net.norms)):
        layers = {"filter": stage.encoder, "pool": stage.pool, **({"norm": norm} if norm else {})}
        for name, layer in layers.items():
            cost = mine[f"stage{s}.{name}"]
            plans = layer.plans(BATCH)
            assert cost.out_shape == layer.out_shape
            assert cost.box == plans.box.size
            assert cost.halo * layer.dtype.itemsize == plans.fetch.bytes_received
            assert cost.out == int(np.prod(plans.out_layout.local_shape(rank())))
        assert mine[f"stage{s}.filter"].params == stage.encoder.weight.local.size
        assert mine[f"stage{s}.decoder"].params == stage.decoder.weight.local.size
    assert plan.per_rank[rank()].params == sum(p.local.size for p in net.parameters().values())
    assert plan.total_params == net.parameter_count()["total"]
