"""16-bit storage of float32 values (models.precision) and the optimisers that keep their
state in it: rounding against float64 references, unbiased stochastic rounding, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import distarray as da
from models.optim import SGD, Adagrad, make_optimizer
from models.precision import bytes_per_element, decode, encode, storage_dtype


def roundtrip(x: np.ndarray, name: str, rounding: str = "nearest", salt: int = 0) -> np.ndarray:
    stored = np.empty(x.shape, storage_dtype(name))
    encode(x.copy(), name, stored, rounding, salt)
    return decode(stored, name, np.empty(x.shape, np.float32))


def bf16_nearest_reference(x: np.ndarray) -> np.ndarray:
    """The nearest bfloat16 (ties to even), from the float64 neighbours of each value."""
    bits = x.view(np.uint32).astype(np.uint64)
    down = (bits >> 16) << 16
    lo, hi = down.astype(np.uint32).view(np.float32), (down + (1 << 16)).astype(np.uint32).view(np.float32)
    dlo, dhi = np.abs(x.astype(np.float64) - lo), np.abs(hi.astype(np.float64) - x)
    even_hi = ((down >> 16) & 1) == 1  # the lower neighbour's last bit is odd: the tie goes up
    return np.where((dhi < dlo) | ((dhi == dlo) & even_hi), hi, lo)


def test_bfloat16_nearest_matches_the_reference():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20000) * np.exp(rng.uniform(-20, 20, 20000))).astype(np.float32)
    ties = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 2**-130], np.float32)  # exact ties, a subnormal
    x = np.concatenate([x, ties])
    np.testing.assert_array_equal(roundtrip(x, "bfloat16"), bf16_nearest_reference(x))
    assert roundtrip(np.array([1 + 2**-8], np.float32), "bfloat16")[0] == 1.0  # tie to even: down
    assert roundtrip(np.array([1 + 3 * 2**-8], np.float32), "bfloat16")[0] == 1 + 2**-6  # tie to even: up


def test_representable_values_and_zero_are_kept():
    x = np.array([0.0, -0.0, 1.0, -2.5, 2.0**100, 2.0**-100, np.inf, -np.inf], np.float32)
    for name in ("bfloat16", "float16", "float32"):
        got = roundtrip(x[:4] if name == "float16" else x, name)
        np.testing.assert_array_equal(got, x[:4] if name == "float16" else x)


def test_float16_is_numpys_rounding():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(roundtrip(x, "float16"), x.astype(np.float16).astype(np.float32))


def test_stochastic_rounding_is_unbiased_and_depends_on_the_salt_only():
    x = np.full(1, 1 + 2**-9, np.float32)  # a quarter of the way from 1 to the next bfloat16 (1 + 2**-7)
    ups = [roundtrip(x, "bfloat16", "stochastic", salt)[0] > 1 for salt in range(4000)]
    assert 0.22 < np.mean(ups) < 0.28
    y = np.random.default_rng(2).standard_normal(5000).astype(np.float32)
    a, b = roundtrip(y, "bfloat16", "stochastic", 7), roundtrip(y, "bfloat16", "stochastic", 7)
    np.testing.assert_array_equal(a, b)  # the same bits for the same values and salt, wherever they sit
    np.testing.assert_array_equal(roundtrip(y[::-1].copy(), "bfloat16", "stochastic", 7), a[::-1])
    assert np.all(np.abs(a - y) <= np.abs(y) * 2**-7)  # within one bfloat16 step
    mean_err = np.mean([roundtrip(y, "bfloat16", "stochastic", s) - y for s in range(200)], axis=0)
    assert np.abs(mean_err).max() < 0.2 * np.abs(y).max() * 2**-7


def test_sizes_and_errors():
    assert [bytes_per_element(n) for n in ("float32", "bfloat16", "float16")] == [4, 2, 2]
    with pytest.raises(ValueError, match=r"expected a storage format in \('float32', 'bfloat16', 'float16'\), got 'int8'"):
        storage_dtype("int8")
    with pytest.raises(ValueError, match="stochastic is for bfloat16"):
        encode(np.ones(2, np.float32), "float16", np.empty(2, np.float16), "stochastic")


def params(dtype=np.float32, seed=0):
    g = da.ProcessGrid((1,))
    rng = np.random.default_rng(seed)
    return {"w": da.from_global(rng.standard_normal((300, 7)).astype(dtype), g)}


@pytest.mark.parametrize("cls", [SGD, Adagrad])
@pytest.mark.parametrize("storage, rounding", [("bfloat16", "nearest"), ("bfloat16", "stochastic"),
                                               ("float16", "nearest")])
def test_optimisers_with_sixteen_bit_state_follow_float32(cls, storage, rounding, monkeypatch):
    monkeypatch.setattr("models.optim.UPDATE_CHUNK", 512)  # several chunks per block
    ref, low = params(), params()
    a, b = cls(ref), cls(low, state_dtype=storage, rounding=rounding)
    rng = np.random.default_rng(3)
    for step in range(20):
        g = {"w": da.from_global(rng.standard_normal((300, 7)).astype(np.float32), ref["w"].grid)}
        a.step(g, 0.01)
        b.step(g, 0.01, salt=step)
    (state,) = b.state.values()
    assert state.local.dtype == storage_dtype(storage) and state.local.nbytes == ref["w"].local.nbytes // 2
    moved = np.abs(ref["w"].local - params()["w"].local).max()
    assert np.abs(low["w"].local - ref["w"].local).max() < 0.02 * moved


def test_sixteen_bit_state_needs_float32_parameters():
    with pytest.raises(ValueError, match=r"expected float32 parameters for bfloat16 optimiser state, got \['float64'\]"):
        make_optimizer("sgd", params(np.float64), state_dtype="bfloat16")
    with pytest.raises(ValueError, match="stochastic rounding"):
        make_optimizer("adagrad", params(), state_dtype="float16", rounding="stochastic")
