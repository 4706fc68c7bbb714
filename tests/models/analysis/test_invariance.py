"""Invariance curves: the transforms (identity at amount 0 or 1, a shift moves content, a
rotation by 90 degrees is a transpose-flip) and the curves of a small network on one rank."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from distarray import comm
from models.analysis.invariance import AMOUNTS, invariance_curves, transform
from models.config import StageSpec
from models.network import Network


def images(n=3, size=16, channels=1, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, size + 4, size + 4, channels))
    x = (x + np.roll(x, 1, 1) + np.roll(x, 1, 2)) / 3  # some smoothness for the splines
    return x[:, 2:-2, 2:-2]


@pytest.mark.parametrize("kind,identity", [("translation", 0.0), ("scale", 1.0), ("rotation", 0.0)])
def test_identity_amounts_change_nothing(kind, identity):
    x = images()
    np.testing.assert_allclose(transform(x, kind, identity), x, atol=1e-10)


def test_shift_rotation_and_scale_move_content():
    x = np.zeros((1, 17, 17, 1))
    x[0, 8, 4, 0] = 1.0
    shifted = transform(x, "translation", 4 / 17)
    assert shifted[0, 8, 8, 0] == pytest.approx(1.0) and shifted[0, 8, 4, 0] == pytest.approx(0.0, abs=1e-9)
    turned = transform(x, "rotation", 90.0)
    assert np.unravel_index(np.argmax(turned), turned.shape)[1:3] in {(4, 8), (12, 8)}
    zoomed = transform(x, "scale", 2.0)
    assert np.unravel_index(np.argmax(zoomed), zoomed.shape)[1:3] == (8, 0)
    with pytest.raises(ValueError, match="transform in"):
        transform(x, "shear", 1.0)
    with pytest.raises(ValueError, match="scale factor > 0"):
        transform(x, "scale", 0.0)


def test_curves_of_a_small_network():
    grid = da.ProcessGrid((1, 1), comm=comm.self_comm())
    network = Network((16, 16, 1), [StageSpec(5, 3, 2, 3)], grid, seed=1, dtype=np.float64)
    curves = invariance_curves(network, images(), 7, 0, "pool", comm.self_comm())
    assert set(curves) == set(AMOUNTS)
    for kind, curve in curves.items():
        assert curve["amounts"] == list(AMOUNTS[kind]) and len(curve["response"]) == len(AMOUNTS[kind])
        centre = curve["amounts"].index(1.0 if kind == "scale" else 0.0)
        assert curve["relative"][centre] == pytest.approx(1.0, abs=1e-6)  # pooled outputs are positive
        assert all(np.isfinite(curve["relative"]))
