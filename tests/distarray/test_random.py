"""Counter-based random numbers: values depend only on (seed, global index) (serial)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import distarray.random as drandom
from distarray.box import Box
from distarray.layout import Layout
from distarray.random import random_block, random_global

MASK = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix_mix(z: int) -> int:
    """SplitMix64's output function in plain Python integers (the reference)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def reference_unit(seed: int, index: int, stream: int) -> float:
    """The documented value: the (2 i + s + 1)-th SplitMix64 output seeded with mix(seed)."""
    state = (splitmix_mix(seed) + (2 * index + stream + 1) * GOLDEN) & MASK
    return (splitmix_mix(state) >> 11) * 2.0**-53


LAYOUTS = [
    Layout.create((13, 7), (3,)),
    Layout.create((13, 7), (2, 3)),
    Layout.create((13, 7), (4,), split=(None, 0)),
    Layout.create((5, 6, 7), (2, 3), split=(1, None, 0)),
    Layout.create((9, 4), (3, 2), blocks=[(0, 7, 2), (4, 0)]),
    Layout.create((3, 5), (5,)),  # more ranks than rows: empty blocks
]


def test_matches_reference_splitmix():
    """Uniform and normal values equal the documented SplitMix64 formula, element by element."""
    shape, seed = (3, 4, 5), 2**63 + 12345
    uni = random_global(shape, seed, dtype=np.float64)
    nor = random_global(shape, seed, dist="normal", a=1.5, b=2.0, dtype=np.float64)
    for i, index in enumerate(np.ndindex(*shape)):
        assert uni[index] == reference_unit(seed, i, 0)
        u1 = 1.0 - reference_unit(seed, i, 0)
        u2 = reference_unit(seed, i, 1)
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        assert nor[index] == pytest.approx(1.5 + 2.0 * z, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: f"{lay.shape}-{lay.grid_shape}")
@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_blocks_stitch_to_global(layout, dist):
    """Stitching every rank's random_block gives random_global, whatever the layout."""
    expect = random_global(layout.shape, 7, dist, dtype=np.float64)
    got = np.full(layout.shape, np.nan)
    for r in range(layout.nranks):
        box = layout.box(r)
        block = random_block(layout.shape, box, 7, dist, dtype=np.float64)
        assert block.shape == box.shape and block.dtype == np.float64
        got[box.slices()] = block
    np.testing.assert_array_equal(got, expect)


def test_value_depends_on_global_index_not_box():
    """An element has the same value in any box that contains it, and only its own shape matters."""
    shape = (10, 11)
    whole = random_global(shape, 3)
    for box in (Box((2, 3), (9, 4)), Box((0, 0), (1, 11)), Box((4, 5), (5, 6)), Box((9, 0), (10, 11))):
        np.testing.assert_array_equal(random_block(shape, box, 3), whole[box.slices()])
    # the same (i, j) in a differently shaped array has a different linear index
    assert not np.array_equal(random_global((10, 12), 3)[:, :11], whole)
    np.testing.assert_array_equal(random_global((110,), 3).reshape(shape), whole)


def test_different_seeds_differ():
    """Distinct seeds (even adjacent ones) give unrelated arrays; the same seed repeats."""
    a, b, c = (random_global((1000,), s, dtype=np.float64) for s in (0, 1, 0))
    np.testing.assert_array_equal(a, c)
    assert (a != b).all()
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1
    assert np.unique(a).size == a.size


def test_streams_and_neighbours_uncorrelated():
    """Neighbouring elements are uncorrelated (the counter hash hides their adjacency)."""
    x = random_global((100_000,), 11, dtype=np.float64)
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 0.02


def test_uniform_statistics():
    """Uniform on [a, b): inside the interval, mean and std near (a+b)/2 and (b-a)/sqrt(12)."""
    a, b = -2.0, 3.0
    x = random_global((100_000,), 1234, "uniform", a, b, dtype=np.float64)
    assert x.min() >= a and x.max() < b
    assert x.mean() == pytest.approx((a + b) / 2, abs=0.03)
    assert x.std() == pytest.approx((b - a) / math.sqrt(12), rel=0.02)
    hist, _ = np.histogram(x, bins=10, range=(a, b))
    assert hist.min() > 9_500 and hist.max() < 10_500


def test_uniform_float32_in_closed_interval():
    """float32 uniform values stay in [a, b] (the cast may round up to b, never past it)."""
    x = random_global((100_000,), 5, "uniform", 10.0, 20.0)
    assert x.dtype == np.float32
    assert x.min() >= 10.0 and x.max() <= 20.0


def test_normal_statistics():
    """Normal(a, b): standard one has mean ~0, std ~1; a shifts and b scales."""
    x = random_global((100_000,), 99, "normal", dtype=np.float64)
    assert abs(x.mean()) < 0.02
    assert x.std() == pytest.approx(1.0, rel=0.02)
    assert np.isfinite(x).all()
    assert 0.67 < np.mean(np.abs(x) < 1.0) < 0.70  # 68.3% within one sigma
    y = random_global((100_000,), 99, "normal", a=5.0, b=0.5, dtype=np.float64)
    np.testing.assert_allclose(y, 5.0 + 0.5 * x, rtol=1e-12)


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_dtypes(dist):
    """float32 is float64 rounded; the default dtype is float32."""
    x64 = random_global((6, 7), 21, dist, dtype=np.float64)
    x32 = random_global((6, 7), 21, dist, dtype=np.float32)
    assert x64.dtype == np.float64 and x32.dtype == np.float32
    assert random_global((6, 7), 21, dist).dtype == np.float32
    np.testing.assert_array_equal(x32, x64.astype(np.float32))


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_seed_out_of_range(seed):
    """Seeds outside [0, 2**64) raise ValueError naming the range."""
    with pytest.raises(ValueError, match=r"seed in \[0, 2\*\*64\), got"):
        random_global((3,), seed)


def test_seed_edges_accepted():
    """0 and 2**64 - 1 are valid seeds and differ."""
    assert not np.array_equal(random_global((8,), 0), random_global((8,), 2**64 - 1))


def test_unknown_dist():
    """An unknown distribution name raises ValueError."""
    with pytest.raises(ValueError, match="expected dist 'uniform' or 'normal', got 'gamma'"):
        random_global((3,), 0, "gamma")


def whole_array_formula(shape, seed: int, dist: str, a: float, b: float) -> np.ndarray:
    """The module's formula evaluated on the whole array at once, out of place, in the
    documented order (what random_global computed before it worked in small in-place passes;
    the networks' initial weights must not change)."""
    m1, m2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)

    def mix(z):
        z = (z ^ (z >> np.uint64(30))) * m1
        z = (z ^ (z >> np.uint64(27))) * m2
        return z ^ (z >> np.uint64(31))

    with np.errstate(over="ignore"):
        key = mix(np.array([seed], np.uint64))[0]
        index = np.arange(int(np.prod(shape)), dtype=np.uint64).reshape(shape)

        def unit(stream):
            bits = mix(key + (index * np.uint64(2) + np.uint64(stream + 1)) * np.uint64(GOLDEN))
            return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)

        if dist == "uniform":
            return a + (b - a) * unit(0)
        return a + b * np.sqrt(-2.0 * np.log(1.0 - unit(0))) * np.cos(2.0 * np.pi * unit(1))


@pytest.mark.parametrize("dist, a, b", [("uniform", -0.03, 0.03), ("normal", 0.25, 1.7)])
def test_bit_identical_to_whole_array_formula(dist, a, b):
    """Many in-place passes (more than one pass per slab here) give exactly the formula's
    values, in float64 and after the cast to float32."""
    shape = (3, 130, 200)  # 78,000 elements: several passes of distarray.random._PASS
    expect = whole_array_formula(shape, 2**40 + 9, dist, a, b)
    np.testing.assert_array_equal(random_global(shape, 2**40 + 9, dist, a, b, dtype=np.float64), expect)
    np.testing.assert_array_equal(random_global(shape, 2**40 + 9, dist, a, b), expect.astype(np.float32))


@pytest.mark.parametrize("chunk, passes", [(1, 1), (2, 3), (5, 7), (13, 64), (13, 1 << 15)])
@pytest.mark.parametrize("shape, box", [
    ((17, 6, 5), Box((3, 1, 0), (16, 6, 4))),
    ((40,), Box((7,), (33,))),
    ((9, 8), Box((0, 0), (9, 8))),
])
def test_chunking_does_not_change_values(monkeypatch, chunk, passes, shape, box):
    """Slabs (distarray.random._CHUNK) and passes (_PASS) change memory use, never values."""
    expect = random_block(shape, box, 17, "normal", dtype=np.float64)
    monkeypatch.setattr(drandom, "_CHUNK", chunk)
    monkeypatch.setattr(drandom, "_PASS", passes)
    got = random_block(shape, box, 17, "normal", dtype=np.float64)
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(random_global(shape, 17, "normal", dtype=np.float64)[box.slices()], got)


def test_empty_and_zero_dim_boxes():
    """Empty boxes give empty arrays; a 0-D array gets element 0's value."""
    assert random_block((4, 5), Box((1, 2), (1, 5)), 0).shape == (0, 3)
    assert random_block((4, 5), Box((1, 2), (3, 2)), 0).shape == (2, 0)
    scalar = random_global((), 8, dtype=np.float64)
    assert scalar.shape == () and float(scalar) == reference_unit(8, 0, 0)
