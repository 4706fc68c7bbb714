"""MPI tests that bad input raises on EVERY rank together, with a message naming what was
expected and what was given, and that nobody is left waiting afterwards.

Run at any size (1-4 ranks): ``mpiexec -n 3 python -m mpi4py -m pytest --with-mpi -m mpi tests``.
The bad argument is given on one rank only (the last); the others pass valid ones. After each
error a collective (``all_alive``) and a working fetch prove that no rank hangs and no stale
message is left behind. A rank that raised the wrong error fails its test, and the conftest
then aborts the job instead of leaving the others in a collective.
"""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da

from .mpi_helpers import all_alive, global_array, grid, rank, size

pytestmark = pytest.mark.mpi

SHAPE = (11, 7)
BOX = ((1, 3), (2, 5))  # a valid box of shape (2, 3)


def bad() -> bool:
    """True on the one rank that passes the bad argument."""
    return rank() == size() - 1


def array(dtype=np.float64, dims=None, split=None) -> tuple[da.DistArray, np.ndarray]:
    g = global_array(SHAPE, dtype, 3)
    return da.from_global(g.copy(), grid(dims or (size(),)), split=split), g


def still_works(x: da.DistArray, g: np.ndarray) -> None:
    """Collective: every rank got here, and the grid still moves data correctly."""
    all_alive()
    np.testing.assert_array_equal(x.fetch(BOX), g[1:3, 2:5])


# -- boxes --------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["fetch", "fetch_plan", "accumulate", "accumulate_plan"])
def test_box_of_wrong_dimensionality_on_one_rank(call):
    x, g = array()
    box = ((0, 1), (0, 1), (0, 1)) if bad() else BOX
    with pytest.raises(ValueError, match=r"expected a box with 2 axes, got 3"):
        if call == "accumulate":
            x.accumulate(box, np.ones((2, 3)))
        else:
            getattr(x, call)(box)
    still_works(x, g)


MALFORMED = [
    ([(3, 1), (0, 2)], ValueError, r"stop < start on axes \[0\]: lo=\(3, 0\), hi=\(1, 2\)"),
    ([(0, None), (0, 2)], ValueError, r"explicit \(start, stop\), got \[\(0, None\)"),
    ((slice(0, 4, 2), slice(0, 2)), ValueError, r"take no step, got \(slice\(0, 4, 2\)"),
    ([(0, 1, 2), (0, 2)], ValueError, r"explicit \(start, stop\), got \[\(0, 1, 2\)"),
    (5, TypeError, r"expected a box as a sequence of \(start, stop\) pairs or slices, got 5"),
    ([(0, 1), 7], TypeError, r"pairs or slices, got \[\(0, 1\), 7\]"),
]


@pytest.mark.parametrize("box, error, message", MALFORMED)
def test_malformed_box_on_one_rank(box, error, message):
    x, g = array()
    with pytest.raises(error, match=message):
        x.fetch(box if bad() else BOX)
    with pytest.raises(error, match=message):
        x.accumulate_plan(box if bad() else BOX)
    still_works(x, g)


# -- accumulate values and fetch out ---------------------------------------------------------
def test_accumulate_values_of_wrong_shape_on_one_rank():
    x, g = array()
    values = np.ones((3, 2)) if bad() else np.ones((2, 3))
    with pytest.raises(ValueError, match=r"expected values of shape \(2, 3\) and dtype float64, "
                                         r"got \(3, 2\) and float64"):
        x.accumulate(BOX, values)
    np.testing.assert_array_equal(x.local, g[x.box.slices()])  # nothing was added anywhere
    still_works(x, g)


@pytest.mark.parametrize("everywhere", [False, True])
def test_accumulate_values_of_wrong_dtype(everywhere):
    x, g = array()
    values = np.ones((2, 3), dtype=np.float32 if bad() or everywhere else np.float64)
    plan = x.accumulate_plan(BOX)
    with pytest.raises(ValueError, match=r"dtype float64, got \(2, 3\) and float32"):
        plan(x, values)
    with pytest.raises(ValueError, match=r"dtype float64, got \(2, 3\) and float32"):
        plan.begin(x, values)
    plan(x, np.zeros((2, 3)))  # the plan is still usable
    np.testing.assert_array_equal(x.local, g[x.box.slices()])
    still_works(x, g)


@pytest.mark.parametrize("out, message", [
    (np.zeros((2, 4)), r"expected out of shape \(2, 3\) and dtype float64, got \(2, 4\) and float64"),
    (np.zeros((2, 3), np.float32),
     r"expected out of shape \(2, 3\) and dtype float64, got \(2, 3\) and float32"),
    (np.zeros((2, 6))[:, ::2], r"expected a C-contiguous out array"),
])
def test_fetch_out_wrong_on_one_rank(out, message):
    x, g = array()
    plan = x.fetch_plan(BOX)
    with pytest.raises(ValueError, match=message):
        plan(x, out=out if bad() else np.zeros((2, 3)))
    with pytest.raises(ValueError, match=message):
        plan.begin(x, out=out if bad() else np.zeros((2, 3)), remote_only=True)
    np.testing.assert_array_equal(plan(x), g[1:3, 2:5])
    still_works(x, g)


# -- grids and layouts -------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [1, 2])
def test_grid_dims_not_matching_communicator_size(extra):
    dims = (size() + extra,)
    with pytest.raises(ValueError, match=rf"product equal to the communicator size {size()}, "
                                         rf"got \({size() + extra},\)"):
        da.ProcessGrid(dims)
    with pytest.raises(ValueError, match=rf"communicator size {size()}, got \(1, 0\)"):
        da.ProcessGrid((1, 0))
    all_alive()


def test_ranks_asking_for_different_grid_dims():
    if size() == 1:
        pytest.skip("needs two ranks to disagree")
    dims = (size(),) if rank() == 0 else (1, size())  # each valid on its own
    with pytest.raises(ValueError, match=rf"ranks differ in grid dims: "
                                         rf"rank 0: \({size()},\); rank 1: \(1, {size()}\)"):
        da.ProcessGrid(dims)
    all_alive()


def test_different_layouts_in_dot():
    x, g = array()
    y, _ = array(dims=(1, size()), split=(None, 1))
    z = da.from_global(g.astype(np.float32), grid((size(),)))
    for other, given in ((y, r"split=\(None, 1\)"), (z, r"dtype=float32")):
        with pytest.raises(ValueError, match=r"dot needs one layout, got Layout\(.*split=\(0, None\).*"
                                             r"\) and Layout\(.*" + given):
            x.dot(other)
    assert x.dot(x) == pytest.approx(float(np.sum(g * g)), rel=1e-12)
    still_works(x, g)


@pytest.mark.parametrize("which", ["fetch", "accumulate"])
def test_array_of_another_layout_in_plan_begin_on_one_rank(which):
    x, g = array()
    y, _ = array(dims=(1, size()), split=(None, 1))
    arg = y if bad() else x
    plan = x.fetch_plan(BOX) if which == "fetch" else x.accumulate_plan(BOX)
    message = (r"array layout does not match the plan's: expected Layout\(.*split=\(0, None\).*"
               r"got Layout\(.*split=\(None, 1\)")
    with pytest.raises(ValueError, match=message):
        if which == "fetch":
            plan.begin(arg)
        else:
            plan.begin(arg, np.ones((2, 3)))
    still_works(x, g)


@pytest.mark.parametrize("what", ["shape", "dtype"])
def test_from_global_differing_on_one_rank(what):
    if size() == 1:
        pytest.skip("needs two ranks to disagree")
    g = global_array(SHAPE, np.float64, 3)
    if bad():
        g = global_array((12, 7), np.float64, 3) if what == "shape" else g.astype(np.float32)
    given = r"shape=\(12, 7\)" if what == "shape" else r".*dtype=float32"
    with pytest.raises(ValueError, match=rf"ranks differ in layouts: rank 0: Layout\(shape="
                                         rf"\(11, 7\), dtype=float64.*rank {size() - 1}: Layout\({given}"):
        da.from_global(g, grid((size(),)))
    all_alive()


def test_layout_split_differing_on_one_rank():
    if size() == 1:
        pytest.skip("needs two ranks to disagree")
    split = (None, 0) if bad() else (0, None)
    message = r"ranks differ in layouts: .*split=\(0, None\).*split=\(None, 0\)"
    with pytest.raises(ValueError, match=message):
        da.zeros(SHAPE, grid((size(),)), split=split)
    all_alive()


def test_invalid_layout_on_one_rank():
    blocks = [(1,) * size(), None] if bad() else None  # extents do not sum to 11
    with pytest.raises(ValueError, match=rf"axis 0: expected {size()} non-negative block extents "
                                         rf"summing to 11, got \({', '.join(['1'] * size())},?\)"):
        da.zeros(SHAPE, grid((size(),)), blocks=blocks)
    all_alive()


# -- roots and halos ---------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["size", "beyond", "negative"])
def test_scatter_and_gather_root_out_of_range(where):
    x, g = array()
    root = {"size": size(), "beyond": size() + 3, "negative": -1}[where]
    message = rf"expected root in range\({size()}\), got {root}"
    with pytest.raises(ValueError, match=message):
        da.scatter(g if rank() == 0 else None, grid((size(),)), root=root)
    with pytest.raises(ValueError, match=message):
        x.gather(root)
    still_works(x, g)


@pytest.mark.parametrize("widths, error, message", [
    ([1, 1, 1], ValueError, r"expected halo widths for 2 axes, got 3: \[1, 1, 1\]"),
    ([(1, -1), 0], ValueError, r"expected non-negative halo widths, got \[\(1, -1\), 0\]"),
    (-2, ValueError, r"expected non-negative halo widths, got -2"),
    (1.5, TypeError, r"expected halo widths as an int, ints or \(before, after\) pairs, got 1.5"),
    ([1, "a"], TypeError, r"expected halo widths as an int, ints or \(before, after\) pairs, got \[1, 'a'\]"),
])
def test_halo_widths_bad_on_one_rank(widths, error, message):
    x, g = array()
    with pytest.raises(error, match=message):
        x.halo(widths if bad() else 1)
    still_works(x, g)


def test_remote_only_without_out_on_one_rank():
    x, g = array()
    plan = x.fetch_plan(BOX)
    with pytest.raises(ValueError, match=r"remote_only=True needs out="):
        plan.begin(x, remote_only=True) if bad() else plan.begin(x, out=np.zeros((2, 3)), remote_only=True)
    still_works(x, g)


def test_begin_twice_and_end_without_begin():
    x, g = array()
    plan = x.fetch_plan(BOX)
    with pytest.raises(RuntimeError, match=r"end\(\) called without begin\(\)"):
        plan.end()
    plan.begin(x)
    with pytest.raises(RuntimeError, match=r"begin\(\) called twice without end\(\)"):
        plan.begin(x)
    np.testing.assert_array_equal(plan.end(), g[1:3, 2:5])  # the first begin completes
    still_works(x, g)


# -- input that is not an array on one rank: must still raise everywhere together ------------
def test_accumulate_values_not_an_array_on_one_rank():
    x, g = array()
    values = [[1.0] * 3] * 2 if bad() else np.ones((2, 3))
    with pytest.raises((TypeError, ValueError), match=r"values"):
        x.accumulate(BOX, values)
    still_works(x, g)


def test_fetch_out_not_an_array_on_one_rank():
    x, g = array()
    plan = x.fetch_plan(BOX)
    with pytest.raises((TypeError, ValueError), match=r"out"):
        plan(x, out=[[0.0] * 3] * 2 if bad() else np.zeros((2, 3)))
    still_works(x, g)


def test_scatter_root_without_an_array():
    x, g = array()
    with pytest.raises((TypeError, ValueError), match=r"root"):
        da.scatter(None, grid((size(),)), root=size() - 1)
    still_works(x, g)


def test_redistribute_to_layouts_differing_on_one_rank():
    if size() == 1:
        pytest.skip("needs two ranks to disagree")
    x, g = array()
    target = da.Layout.create(SHAPE, (size(),), (0, None) if bad() else (None, 0), np.float64)
    with pytest.raises(ValueError, match=r"ranks differ in layouts to redistribute to: rank 0: Layout"):
        x.redistribute(target)
    still_works(x, g)


def test_plan_given_something_else_than_a_distarray_on_one_rank():
    x, g = array()
    plan = x.fetch_plan(BOX)
    with pytest.raises(TypeError, match=r"expected a DistArray, got ndarray"):
        plan.begin(g if bad() else x)
    acc = x.accumulate_plan(BOX)
    with pytest.raises(TypeError, match=r"expected a DistArray, got ndarray"):
        acc.begin(g if bad() else x, np.zeros(acc.box.shape))
    still_works(x, g)


def test_from_global_given_a_list_on_one_rank():
    x, g = array()
    with pytest.raises(TypeError, match=r"from_global expected an array, got list"):
        da.from_global(g.tolist() if bad() else g, grid((size(),)))
    still_works(x, g)
