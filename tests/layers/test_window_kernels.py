"""Window kernels (L2 pooling, LCN) against the loop references, finite differences, out= buffers
and error messages (serial, every available array backend)."""

from __future__ import annotations

import numpy as np
import pytest

from distarray.backend import available_backends, namespace, to_host
from layers.reference import l2pool_reference, lcn_reference
from layers.window_kernels import (
    gaussian_window,
    l2pool_backward,
    l2pool_forward,
    lcn_backward,
    lcn_forward,
)

TOL = {np.float32: 1e-5, np.float64: 1e-12}

# (H, W, C, B, p, stride): odd sizes, overlapping (p > stride), tiling and gapped (p < stride)
POOL_CASES = [
    (7, 9, 1, 1, 1, 1),
    (7, 9, 3, 2, 2, 2),
    (8, 7, 2, 3, 3, 2),
    (9, 11, 4, 1, 3, 3),
    (10, 7, 2, 2, 5, 1),
    (12, 13, 1, 3, 4, 3),
    (9, 9, 2, 2, 2, 3),
    (5, 5, 2, 1, 5, 5),
]
# (H, W, C, B, n, sigma)
LCN_CASES = [
    (7, 9, 1, 1, 1, 1.0),
    (7, 9, 2, 3, 1, 1.0),
    (7, 9, 1, 2, 3, 1.0),
    (8, 10, 3, 2, 3, 0.7),
    (9, 7, 4, 3, 5, 1.5),
    (11, 12, 2, 1, 7, 2.0),
    (5, 6, 2, 2, 5, 1.0),
]


@pytest.fixture(params=available_backends())
def xp(request):
    """The array module of every backend this machine has."""
    return namespace(request.param)


def assert_close(got, want: np.ndarray, rel: float) -> None:
    """``got`` (any backend) matches ``want`` to ``rel`` relative to each value or to max|want|."""
    got = to_host(got)
    assert got.shape == want.shape
    scale = float(np.abs(want).max()) or 1.0
    np.testing.assert_allclose(got, want, rtol=rel, atol=rel * scale)


def finite_diff(f, x: np.ndarray, dy: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of ``sum(dy * f(x))`` with respect to every element of x."""
    grad = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        xp_, xm_ = x.copy(), x.copy()
        xp_[idx] += h
        xm_[idx] -= h
        grad[idx] = (np.sum(dy * f(xp_)) - np.sum(dy * f(xm_))) / (2 * h)
    return grad


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """Norm of the difference relative to the norm of ``want``."""
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def window_sigmas(x: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """sqrt(S) of every LCN window, by loops (float64), shape (oh, ow, B)."""
    H, W, C, B = x.shape
    wts = gaussian_window(n, sigma)[:, :, None, None] / C
    out = np.empty((H - n + 1, W - n + 1, B))
    for i in range(H - n + 1):
        for j in range(W - n + 1):
            win = x[i:i + n, j:j + n]
            mu = np.sum(wts * win, axis=(0, 1, 2))
            out[i, j] = np.sqrt(np.sum(wts * (win - mu) ** 2, axis=(0, 1, 2)))
    return out


# --------------------------------------------------------------------------- forward vs reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_l2pool_forward_matches_reference(xp, case, dtype):
    """Every pooling geometry and dtype agrees with the loop reference (computed in float64)."""
    H, W, C, B, p, stride = case
    x = np.random.default_rng(1).standard_normal((H, W, C, B)).astype(dtype)
    y = l2pool_forward(xp.asarray(x), p, stride, 1e-3)
    assert y.dtype == dtype
    assert_close(y, l2pool_reference(x.astype(np.float64), p, stride, 1e-3), TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_l2pool_backward_matches_loop_gradient(xp, case, dtype):
    """The gradient is x * dy / y summed over the windows holding x (loops, float64)."""
    H, W, C, B, p, stride = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal((H, W, C, B))
    y = l2pool_reference(x, p, stride, 1e-3)
    dy = rng.standard_normal(y.shape)
    want = np.zeros_like(x)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            rows, cols = slice(stride * i, stride * i + p), slice(stride * j, stride * j + p)
            want[rows, cols] += x[rows, cols] * (dy[i, j] / y[i, j])
    got = l2pool_backward(xp.asarray(x.astype(dtype)), xp.asarray(y.astype(dtype)),
                          xp.asarray(dy.astype(dtype)), p, stride)
    assert got.dtype == dtype
    assert_close(got, want, 10 * TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", LCN_CASES)
def test_lcn_forward_matches_reference(xp, case, dtype):
    """Every window size, map count and dtype agrees with the loop reference (float64)."""
    H, W, C, B, n, sigma = case
    x = np.random.default_rng(3).standard_normal((H, W, C, B)).astype(dtype)
    y = lcn_forward(xp.asarray(x), n, sigma, 0.1)
    assert y.dtype == dtype
    assert_close(y, lcn_reference(x.astype(np.float64), n, sigma, 0.1), TOL[dtype])


@pytest.mark.parametrize("case", LCN_CASES)
def test_lcn_backward_float32_matches_float64(xp, case):
    """float32 gradients agree with float64 ones (the float64 gradient is checked against
    finite differences below)."""
    H, W, C, B, n, sigma = case
    rng = np.random.default_rng(13)
    x = rng.standard_normal((H, W, C, B)).astype(np.float32)
    dy = rng.standard_normal((H - n + 1, W - n + 1, C, B)).astype(np.float32)
    got = lcn_backward(xp.asarray(x), xp.asarray(dy), n, sigma, 0.1)
    assert got.dtype == np.float32
    want = lcn_backward(x.astype(np.float64), dy.astype(np.float64), n, sigma, 0.1)
    assert_close(got, want, 1e-4)


def test_lcn_forward_float32_large_offset(xp):
    """A mean 100 times the spread costs float32 no more than the rounding of the input itself
    (E[x**2] - mu**2 would lose about 1e-3 here)."""
    x = (100.0 + np.random.default_rng(4).standard_normal((10, 11, 3, 2))).astype(np.float32)
    y = lcn_forward(xp.asarray(x), 5, 1.0, 0.1)
    want = lcn_reference(x.astype(np.float64), 5, 1.0, 0.1)
    assert np.abs(to_host(y) - want).max() < 1e-4 * np.abs(want).max()


def test_gaussian_window():
    """Sums to 1, symmetric, centred, with the Gaussian ratio between neighbours; n=1 is [[1]]."""
    g = gaussian_window(5, 1.3)
    assert g.shape == (5, 5) and g.dtype == np.float64
    assert abs(g.sum() - 1.0) < 1e-15
    np.testing.assert_array_equal(g, g.T)
    np.testing.assert_array_equal(g, g[::-1, ::-1])
    assert np.unravel_index(np.argmax(g), g.shape) == (2, 2)
    assert g[2, 3] / g[2, 2] == pytest.approx(np.exp(-1 / (2 * 1.3**2)), rel=1e-14)
    assert g[0, 0] / g[2, 2] == pytest.approx(np.exp(-8 / (2 * 1.3**2)), rel=1e-14)
    np.testing.assert_array_equal(gaussian_window(1, 0.5), [[1.0]])


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("eps", [1e-3, 0.0])
@pytest.mark.parametrize("case", [(6, 7, 2, 2, 2, 2), (7, 6, 2, 1, 3, 2), (7, 8, 1, 2, 2, 3),
                                  (5, 6, 3, 1, 3, 1)])
def test_l2pool_backward_finite_differences(case, eps):
    """The gradient of sum(dy * y) matches central differences (float64)."""
    H, W, C, B, p, stride = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal((H, W, C, B))
    y = l2pool_forward(x, p, stride, eps)
    dy = rng.standard_normal(y.shape)
    want = finite_diff(lambda z: l2pool_forward(z, p, stride, eps), x, dy)
    assert rel_err(l2pool_backward(x, y, dy, p, stride), want) < 1e-6


def test_l2pool_backward_zero_window_and_uncovered_positions():
    """With eps = 0 an all-zero window passes a zero gradient (no NaN); positions that no
    window covers (p < stride) get 0."""
    x = np.random.default_rng(6).standard_normal((8, 8, 1, 1)) + 3.0
    x[:3, :3] = 0.0                                     # window (0, 0) is all zero
    y = l2pool_forward(x, 2, 3, 0.0)
    assert y[0, 0, 0, 0] == 0.0
    dx = l2pool_backward(x, y, np.ones_like(y), 2, 3)
    assert np.isfinite(dx).all()
    rows = np.isin(np.arange(8), [0, 1, 3, 4, 6, 7])
    covered = rows[:, None] & rows[None, :]
    assert (dx[~covered] == 0).all()
    assert (dx[covered & (x[:, :, 0, 0] != 0)] != 0).all()


@pytest.mark.parametrize("case", [(6, 7, 1, 2, 3, 1.0), (7, 6, 2, 2, 3, 0.8), (7, 7, 3, 1, 5, 1.2),
                                  (5, 6, 3, 1, 1, 1.0)])
def test_lcn_backward_finite_differences(case):
    """The gradient of sum(dy * y) matches central differences where no window is floored."""
    H, W, C, B, n, sigma = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((H, W, C, B))
    floor = 0.05
    assert np.abs(window_sigmas(x, n, sigma) - floor).min() > 1e-3   # clear of the kink
    dy = rng.standard_normal((H - n + 1, W - n + 1, C, B))
    want = finite_diff(lambda z: lcn_forward(z, n, sigma, floor), x, dy)
    assert rel_err(lcn_backward(x, dy, n, sigma, floor), want) < 1e-6


def floored_input() -> np.ndarray:
    """(9, 10, 2, 2): a constant block, a low-contrast block and a high-contrast block."""
    rng = np.random.default_rng(8)
    x = 2.0 + 0.01 * rng.standard_normal((9, 10, 2, 2))
    x[:, 6:] += rng.standard_normal((9, 4, 2, 2))       # high contrast on the right
    x[:4, :4] = 2.0                                      # constant top-left
    return x


def test_lcn_backward_finite_differences_floored_windows():
    """Windows below the floor (constant and low-contrast ones) pass no gradient through D;
    the input keeps clear of the kink, so central differences still apply."""
    x, n, sigma, floor = floored_input(), 3, 1.0, 0.2
    sig = window_sigmas(x, n, sigma)
    assert (sig < floor).any() and (sig > floor).any()
    assert np.abs(sig - floor).min() > 1e-3
    dy = np.random.default_rng(9).standard_normal((9 - n + 1, 10 - n + 1, 2, 2))
    want = finite_diff(lambda z: lcn_forward(z, n, sigma, floor), x, dy)
    assert rel_err(lcn_backward(x, dy, n, sigma, floor), want) < 1e-6


def test_lcn_floor_is_honoured():
    """Where sqrt(S) <= floor the divisor is the floor: y * floor is the same for two floors,
    and a constant window gives 0."""
    x, n, sigma = floored_input(), 3, 1.0
    sig = window_sigmas(x, n, sigma)[:, :, None, :]          # (oh, ow, 1, B)
    y2, y4 = lcn_forward(x, n, sigma, 0.2), lcn_forward(x, n, sigma, 0.4)
    low, high = np.broadcast_to(sig < 0.2, y2.shape), np.broadcast_to(sig > 0.4, y2.shape)
    assert low.any() and high.any()
    np.testing.assert_allclose((y2 * 0.2)[low], (y4 * 0.4)[low], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(y2[high], y4[high], rtol=1e-12)
    assert np.abs(y2[:2, :2]).max() < 1e-12                 # windows inside the constant block


def test_lcn_backward_float32_large_offset():
    """In float32 with a mean 100 times the spread, the gradient stays close to float64's."""
    x = (100.0 + np.random.default_rng(10).standard_normal((8, 9, 3, 2))).astype(np.float32)
    dy = np.random.default_rng(11).standard_normal((4, 5, 3, 2)).astype(np.float32)
    got = lcn_backward(x, dy, 5, 1.0, 0.1)
    want = lcn_backward(x.astype(np.float64), dy.astype(np.float64), 5, 1.0, 0.1)
    assert rel_err(got.astype(np.float64), want) < 1e-4


# --------------------------------------------------------------------------- out= buffers


def test_out_buffers_are_filled_and_returned(xp):
    """Each kernel writes into the given buffer and returns it."""
    rng = np.random.default_rng(12)
    x = xp.asarray(rng.standard_normal((7, 8, 2, 3)))
    y = l2pool_forward(x, 3, 2, 1e-3)
    dy = xp.asarray(rng.standard_normal(y.shape))
    z = lcn_forward(x, 3, 1.0, 0.1)
    dz = xp.asarray(rng.standard_normal(z.shape))
    calls = [
        (lambda o: l2pool_forward(x, 3, 2, 1e-3, out=o), y.shape),
        (lambda o: l2pool_backward(x, y, dy, 3, 2, out=o), x.shape),
        (lambda o: lcn_forward(x, 3, 1.0, 0.1, out=o), z.shape),
        (lambda o: lcn_backward(x, dz, 3, 1.0, 0.1, out=o), x.shape),
    ]
    for call, shape in calls:
        buf = xp.full(shape, np.nan)
        assert call(buf) is buf
        np.testing.assert_array_equal(to_host(buf), to_host(call(None)))


# --------------------------------------------------------------------------- errors


def test_input_must_be_4d_float():
    """Inputs other than 4-D floating point arrays are refused, naming the layout."""
    with pytest.raises(ValueError, match=r"expected a 4-D input laid out \(H, W, C, B\), "
                                         r"got shape \(3, 4, 2\)"):
        l2pool_forward(np.zeros((3, 4, 2)), 2, 2, 0.0)
    with pytest.raises(ValueError, match=r"4-D input .* got shape \(3, 4, 2, 1, 1\)"):
        lcn_forward(np.zeros((3, 4, 2, 1, 1)), 3, 1.0, 0.1)
    with pytest.raises(TypeError, match="expected a floating-point input .* got int64"):
        lcn_backward(np.zeros((5, 5, 1, 1), dtype=np.int64), np.zeros((3, 3, 1, 1)), 3, 1.0, 0.1)


def test_input_smaller_than_window():
    """The message gives the window and the input's H x W."""
    with pytest.raises(ValueError, match="expected an input of at least 5x5 for a 5x5 window, "
                                         "got 3x4"):
        lcn_forward(np.zeros((3, 4, 2, 1)), 5, 1.0, 0.1)
    with pytest.raises(ValueError, match="at least 3x3 for a 3x3 window, got 8x2"):
        l2pool_forward(np.zeros((8, 2, 1, 1)), 3, 1, 0.0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda x: l2pool_forward(x, 0, 1, 0.0), ValueError, "expected pool size p >= 1, got 0"),
    (lambda x: l2pool_forward(x, 2, 0, 0.0), ValueError, "expected stride >= 1, got 0"),
    (lambda x: l2pool_forward(x, 2, 1, -1.0), ValueError, "expected eps >= 0, got -1.0"),
    (lambda x: l2pool_forward(x, 2.5, 1, 0.0), TypeError, "expected an integer pool size p"),
    (lambda x: lcn_forward(x, 4, 1.0, 0.1), ValueError, "expected an odd window size n, got 4"),
    (lambda x: lcn_forward(x, 0, 1.0, 0.1), ValueError, "expected window size n >= 1, got 0"),
    (lambda x: lcn_forward(x, 3, 0.0, 0.1), ValueError, "expected sigma > 0, got 0.0"),
    (lambda x: lcn_forward(x, 3, 1.0, 0.0), ValueError, "expected floor > 0, got 0.0"),
    (lambda x: lcn_backward(x, np.zeros((4, 4, 2, 1)), 3, 1.0, -1), ValueError,
     "expected floor > 0, got -1.0"),
])
def test_bad_parameters(call, exc, match):
    """Each bad parameter is named with what was expected and what was given."""
    with pytest.raises(exc, match=match):
        call(np.zeros((6, 6, 2, 1)))


def test_bad_gradient_and_output_shapes():
    """dy, y and out of the wrong shape or dtype are refused with the expected shape."""
    x = np.zeros((6, 6, 2, 1))
    with pytest.raises(ValueError, match=r"expected dy of shape \(oh, ow, C, B\) = "
                                         r"\(3, 3, 2, 1\), got \(3, 2, 2, 1\)"):
        l2pool_backward(x, np.ones((3, 3, 2, 1)), np.ones((3, 2, 2, 1)), 2, 2)
    with pytest.raises(ValueError, match=r"expected y of shape \(oh, ow, C, B\) = \(3, 3, 2, 1\)"):
        l2pool_backward(x, np.ones((2, 3, 2, 1)), np.ones((3, 3, 2, 1)), 2, 2)
    with pytest.raises(ValueError, match=r"expected dy of shape \(oh, ow, C, B\) = "
                                         r"\(4, 4, 2, 1\), got \(4, 4, 1, 1\)"):
        lcn_backward(x, np.ones((4, 4, 1, 1)), 3, 1.0, 0.1)
    with pytest.raises(ValueError, match=r"expected out of shape \(4, 4, 2, 1\) and dtype "
                                         r"float64, got shape \(4, 4, 2, 2\)"):
        lcn_forward(x, 3, 1.0, 0.1, out=np.empty((4, 4, 2, 2)))
    with pytest.raises(ValueError, match="dtype float64, got shape .* and dtype float32"):
        l2pool_backward(x, np.ones((3, 3, 2, 1)), np.ones((3, 3, 2, 1)), 2, 2,
                        out=np.empty((6, 6, 2, 1), dtype=np.float32))
