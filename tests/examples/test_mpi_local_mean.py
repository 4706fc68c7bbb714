"""The tutorial layer (examples/local_mean_layer.py, docs/writing-a-layer.md) at 1-4 ranks:
forward equals the serial reference, backward is its exact adjoint and matches finite
differences, on every grid of this job's ranks."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

import distarray as da

from ..distarray.mpi_helpers import grid, grid_shapes, size

pytestmark = pytest.mark.mpi

PATH = Path(__file__).resolve().parents[2] / "examples" / "local_mean_layer.py"
_spec = importlib.util.spec_from_file_location("local_mean_layer", PATH)
tutorial = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tutorial)

SHAPE, K = (11, 9, 2, 3), 3


@pytest.mark.parametrize("dims", grid_shapes(size(), 2))
def test_forward_is_the_reference_and_backward_its_adjoint(dims):
    rng = np.random.default_rng(7)
    g, gy = rng.standard_normal(SHAPE), rng.standard_normal((9, 7, 2, 3))
    x = da.from_global(g, grid(dims), split=(0, 1, None, None))
    layer = tutorial.LocalMean(x.layout, K, grid(dims))
    y = layer.forward(x)
    np.testing.assert_allclose(y.allgather(), tutorial.reference(g, K), rtol=1e-13, atol=1e-14)
    dy = da.from_global(gy, grid(dims), split=(0, 1, None, None))
    dx = layer.backward(dy)
    # adjoint: <A x, dy> = <x, A^T dy>, both collective sums
    assert math.isclose(np.vdot(y, dy), np.vdot(x, dx), rel_tol=1e-12)
    # finite differences of L = <A x, dy> at a few entries (A is linear: exact up to rounding)
    full = dx.allgather()
    for index in [(0, 0, 0, 0), (5, 4, 1, 2), (10, 8, 1, 0)]:
        e = np.zeros(SHAPE)
        e[index] = 1e-3
        bumped = tutorial.reference(g + e, K)
        slope = (np.vdot(bumped, gy) - np.vdot(tutorial.reference(g, K), gy)) / 1e-3
        assert math.isclose(full[index], slope, rel_tol=1e-7, abs_tol=1e-9)
