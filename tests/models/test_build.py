"""From a configuration to what runs it: the grid rule (pure), a placement on one rank, and
the network and data source the trainer, `cots neurons` and `cots plan` share."""

from __future__ import annotations

import numpy as np
import pytest

from distarray import comm
from models.build import build_dataset, build_network, grid_dims, place
from models.config import parse_config
from models.data import BundledImages


def config(**run):
    return parse_config({"model": {"input": [12, 20, 3], "seed": 3, "stages": [{"k": 3, "maps": 2, "pool": 2}]},
                         "data": {"face_share": 0.5}, "run": run})


@pytest.mark.parametrize("ranks, expected", [(1, (1, 1)), (2, (1, 2)), (4, (2, 2)), (6, (2, 3))])
def test_auto_grid_is_balanced_over_the_input(ranks, expected):
    assert grid_dims(config(), ranks) == expected


def test_a_given_grid_is_kept_or_refused():
    assert grid_dims(config(grid=[3, 1]), 3) == (3, 1)
    with pytest.raises(ValueError, match=r"expected run.grid with 4 ranks per replica, got \[3, 1\]"):
        grid_dims(config(grid=[3, 1]), 4)
    assert grid_dims(config(grid=[3, 1]), 4, strict=False) == (2, 2)  # analysis at another rank count


def test_place_on_one_rank():
    placement = place(config(), comm.self_comm())
    assert placement.grid.dims == (1, 1) and (placement.replica, placement.replicas) == (0, 1)
    with pytest.raises(ValueError, match=r"ranks \(1\) divisible by run.replicas \(2\)"):
        place(config(replicas=2), comm.self_comm())


def test_network_and_data_follow_the_configuration():
    c = config()
    network = build_network(c, place(c, comm.self_comm()).grid)
    assert network.input_shape == (12, 20, 3) and network.specs == c.model.stages
    assert network.stages[0].encoder.dtype == np.float32
    data = build_dataset(c)
    assert isinstance(data, BundledImages) and data.shape == (12, 20, 3) and data.face_share == 0.5
    assert data.seed == 3
