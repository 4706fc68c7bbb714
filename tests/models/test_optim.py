"""Learning-rate schedules, and SGD with momentum and Adagrad against hand-written NumPy updates
on one rank, in float64 and float32."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import distarray as da
from models.optim import SGD, Adagrad, Optimizer, Schedule, make_optimizer

SHAPES = {"w": (4, 5), "b": (6,), "c": (3, 2, 2)}
LRS = [0.1, 0.05, 0.2, 0.01, 0.3]  # a different rate each step
TOL = {np.float64: 1e-12, np.float32: 2e-5}


# --- Schedule --------------------------------------------------------------------------------

def test_constant():
    schedule = Schedule(0.1)
    assert [schedule(step) for step in (0, 1, 99, 10**6)] == [0.1] * 4


def test_warmup_linear_from_lr_over_warmup():
    schedule = Schedule(0.4, warmup=4)
    assert [schedule(step) for step in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4], abs=1e-15)


@pytest.mark.parametrize("kind", ["cosine", "step"])
def test_warmup_reaches_lr_on_its_last_step_for_every_kind(kind):
    schedule = Schedule(0.3, kind, total=50, warmup=5, final=0.1, every=7)
    assert schedule(0) == pytest.approx(0.3 / 5)
    assert schedule(4) == pytest.approx(0.3) and schedule(5) == pytest.approx(0.3)


def test_cosine():
    lr, final, warmup, total = 2.0, 0.1, 10, 110
    schedule = Schedule(lr, "cosine", total=total, warmup=warmup, final=final)
    assert schedule(warmup) == pytest.approx(lr)
    assert schedule(total) == pytest.approx(lr * final)
    assert schedule(60) == pytest.approx(lr * (final + (1 - final) / 2))  # half-way: mean of the ends
    assert schedule(35) == pytest.approx(lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi / 4))))
    assert schedule(total + 1) == schedule(10 * total) == pytest.approx(lr * final)  # held after the horizon
    after = [schedule(step) for step in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(after, after[1:]))


def test_cosine_without_warmup_starts_at_lr_and_defaults_to_zero():
    schedule = Schedule(1.0, "cosine", total=20)
    assert schedule(0) == 1.0
    assert schedule(20) == pytest.approx(0.0, abs=1e-15)


def test_step_decay():
    schedule = Schedule(1.0, "step", warmup=2, factor=0.5, every=10)
    assert [schedule(step) for step in (2, 11, 12, 21, 22, 32)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"lr": 0.1, "kind": "linear"}, "'linear'"), ({"lr": 0.0}, "lr > 0"), ({"lr": -0.1}, "lr > 0"),
    ({"lr": float("nan")}, "lr > 0"), ({"lr": 0.1, "warmup": -1}, "warmup >= 0"),
    ({"lr": 0.1, "total": 0}, "total >= 1"), ({"lr": 0.1, "every": 0}, "every >= 1"),
])
def test_schedule_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match="expected") as info:
        Schedule(**kwargs)
    assert fragment in str(info.value)


def test_schedule_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Schedule(0.1).lr = 0.2


# --- optimisers ------------------------------------------------------------------------------

def grid() -> da.ProcessGrid:
    return da.ProcessGrid((1, 1))


def distribute(arrays: dict[str, np.ndarray]) -> dict[str, da.DistArray]:
    g = grid()
    return {name: da.from_global(a, g, split=(0, 1, None)[:a.ndim] if a.ndim > 1 else (0,))
            for name, a in arrays.items()}


def host(arrays: dict[str, da.DistArray]) -> dict[str, np.ndarray]:
    return {name: np.array(a.local) for name, a in arrays.items()}


def draws(dtype, seed: int = 0):
    """Start weights and a gradient per step (float64 copies for the oracle)."""
    rng = np.random.default_rng(seed)
    weights = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    grads = [{name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()} for _ in LRS]
    return weights, grads


def sgd_oracle(w, grads, lrs, mu, wd):
    w, v = w.astype(np.float64), np.zeros(w.shape)
    for g, lr in zip(grads, lrs):
        g = g.astype(np.float64) + wd * w
        v = mu * v + g
        w = w - lr * v
    return w, v


def adagrad_oracle(w, grads, lrs, eps, wd):
    w, acc = w.astype(np.float64), np.zeros(w.shape)
    for g, lr in zip(grads, lrs):
        g = g.astype(np.float64) + wd * w
        acc = acc + g * g
        w = w - lr * g / (np.sqrt(acc) + eps)
    return w, acc


def run(optimizer_class, dtype, wd, **kwargs):
    """Run LRS steps; returns the optimiser, the start weights, the gradients and the locals
    that must have been updated in place."""
    weights, grads = draws(dtype)
    params = distribute(weights)
    locals_ = {name: p.local for name, p in params.items()}
    opt = optimizer_class(params, weight_decay=wd, **kwargs)
    for g, lr in zip(grads, LRS):
        dist_g = distribute(g)
        opt.step(dist_g, lr)
        for name in SHAPES:  # gradients are read, never written
            np.testing.assert_array_equal(dist_g[name].local, g[name])
    return opt, weights, grads, locals_


def check_in_place(opt, locals_, dtype):
    for name, p in opt.params.items():
        assert p.local is locals_[name], f"{name} replaced instead of updated in place"
        assert p.local.dtype == dtype and p.dtype == dtype
    for name, s in opt.state.items():
        assert s.local.dtype == dtype and s.dtype == dtype, name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mu, wd", [(0.9, 0.0), (0.0, 0.0), (0.5, 0.01)])
def test_sgd_matches_numpy(dtype, mu, wd):
    opt, weights, grads, locals_ = run(SGD, dtype, wd, momentum=mu)
    check_in_place(opt, locals_, dtype)
    for name in SHAPES:
        w, v = sgd_oracle(weights[name], [g[name] for g in grads], LRS, mu, wd)
        np.testing.assert_allclose(opt.params[name].local, w, rtol=TOL[dtype], atol=TOL[dtype])
        np.testing.assert_allclose(opt.state[f"{name}.momentum"].local, v, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("eps, wd", [(1e-8, 0.0), (0.1, 0.0), (1e-6, 0.05)])
def test_adagrad_matches_numpy(dtype, eps, wd):
    opt, weights, grads, locals_ = run(Adagrad, dtype, wd, eps=eps)
    check_in_place(opt, locals_, dtype)
    for name in SHAPES:
        w, acc = adagrad_oracle(weights[name], [g[name] for g in grads], LRS, eps, wd)
        np.testing.assert_allclose(opt.params[name].local, w, rtol=TOL[dtype], atol=TOL[dtype])
        np.testing.assert_allclose(opt.state[f"{name}.sum_sq"].local, acc, rtol=TOL[dtype], atol=TOL[dtype])


def test_adagrad_first_step_is_lr_times_sign():
    """With G = g^2 after one step, the update is lr g / (|g| + eps): about lr in size."""
    weights, (grads, *_) = draws(np.float64)
    opt = Adagrad(distribute(weights), eps=1e-12)
    opt.step(distribute(grads), 0.1)
    for name in SHAPES:
        np.testing.assert_allclose(weights[name] - opt.params[name].local, 0.1 * np.sign(grads[name]), rtol=1e-9)


@pytest.mark.parametrize("make", [lambda p: SGD(p, momentum=0.9, weight_decay=0.01),
                                  lambda p: Adagrad(p, eps=1e-8, weight_decay=0.01)])
def test_float32_stays_float32_with_float64_gradients(make):
    weights, grads = draws(np.float32)
    params = distribute(weights)
    locals_ = {name: p.local for name, p in params.items()}
    opt = make(params)
    opt.step(distribute({name: g.astype(np.float64) for name, g in grads[0].items()}), 0.1)
    check_in_place(opt, locals_, np.float32)
    assert all(np.all(opt.params[name].local != weights[name]) for name in SHAPES)


@pytest.mark.parametrize("optimizer_class, slot", [(SGD, "momentum"), (Adagrad, "sum_sq")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_named_per_parameter_and_zero_initially(optimizer_class, slot, dtype):
    weights, _ = draws(dtype)
    params = distribute(weights)
    opt = optimizer_class(params)
    assert optimizer_class.slots == (slot,)
    assert opt.state == {}  # allocated at first update
    opt.ensure_state(["w"])
    assert sorted(opt.state) == [f"w.{slot}"]
    opt.ensure_state()
    assert sorted(opt.state) == sorted(f"{name}.{slot}" for name in SHAPES)
    for name, p in params.items():
        state = opt.state[f"{name}.{slot}"]
        assert state.shape == p.shape and state.layout == p.layout and state.dtype == dtype
        assert state.local is not p.local and np.all(state.local == 0)
    np.testing.assert_array_equal(params["w"].local, weights["w"])  # construction changes nothing


@pytest.mark.parametrize("optimizer_class, slot", [(SGD, "momentum"), (Adagrad, "sum_sq")])
def test_step_updates_only_the_named_parameters(optimizer_class, slot):
    weights, grads = draws(np.float64)
    opt = optimizer_class(distribute(weights), weight_decay=0.1)
    opt.step(distribute(grads[0]), 0.1, names=["w", "c"])
    for name in ("w", "c"):
        assert np.all(opt.params[name].local != weights[name])
        assert np.any(opt.state[f"{name}.{slot}"].local != 0)
    np.testing.assert_array_equal(opt.params["b"].local, weights["b"])
    assert f"b.{slot}" not in opt.state  # never updated: no state held
    opt.step(distribute(grads[1]), 0.1, names=[])
    np.testing.assert_array_equal(opt.params["b"].local, weights["b"])


@pytest.mark.parametrize("optimizer_class, slot", [(SGD, "momentum"), (Adagrad, "sum_sq")])
def test_released_state_is_freed_and_restarts_from_zero(optimizer_class, slot):
    weights, grads = draws(np.float64)
    opt = optimizer_class(distribute(weights))
    opt.step(distribute(grads[0]), 0.1)
    opt.release(["w", "c"])
    assert sorted(opt.state) == [f"b.{slot}"]
    after = {name: opt.params[name].local.copy() for name in ("w", "c")}
    opt.step(distribute(grads[1]), 0.1, names=["w", "c"])
    fresh = optimizer_class(distribute(after))  # the same update from zero state
    fresh.step(distribute(grads[1]), 0.1, names=["w", "c"])
    for name in ("w", "c"):
        np.testing.assert_array_equal(opt.params[name].local, fresh.params[name].local)
    with pytest.raises(KeyError, match="expected parameter names"):
        opt.release(["nope"])


def test_step_needs_gradients_only_for_the_named_parameters():
    weights, grads = draws(np.float64)
    opt = SGD(distribute(weights))
    opt.step(distribute({"b": grads[0]["b"]}), 0.1, names=["b"])
    with pytest.raises(KeyError):
        opt.step(distribute({"b": grads[0]["b"]}), 0.1)


def test_weight_decay_alone_shrinks_the_weights():
    weights, _ = draws(np.float64)
    zeros = {name: np.zeros(shape) for name, shape in SHAPES.items()}
    opt = SGD(distribute(weights), momentum=0.0, weight_decay=0.5)
    opt.step(distribute(zeros), 0.2)
    for name in SHAPES:
        np.testing.assert_allclose(opt.params[name].local, 0.9 * weights[name], rtol=1e-15)


def test_optimizer_keeps_its_own_dict_of_the_callers_arrays():
    params = distribute(draws(np.float64)[0])
    opt = SGD(params)
    assert opt.params is not params and all(opt.params[name] is params[name] for name in params)


def test_base_optimizer_has_no_update():
    opt = Optimizer(distribute(draws(np.float64)[0]))
    assert opt.state == {}
    with pytest.raises(NotImplementedError):
        opt.step(distribute(draws(np.float64)[1][0]), 0.1)


# --- make_optimizer and hyper ----------------------------------------------------------------

def test_make_optimizer_passes_its_arguments():
    params = distribute(draws(np.float64)[0])
    sgd = make_optimizer("sgd", params, momentum=0.5, weight_decay=0.01, eps=0.3)
    assert type(sgd) is SGD and sgd.hyper() == {"name": "sgd", "weight_decay": 0.01, "momentum": 0.5,
                                        "state_dtype": "float32", "rounding": "nearest"}
    ada = make_optimizer("adagrad", params, momentum=0.5, weight_decay=0.02, eps=1e-6)
    assert type(ada) is Adagrad and ada.hyper() == {"name": "adagrad", "weight_decay": 0.02, "eps": 1e-6,
                                            "state_dtype": "float32", "rounding": "nearest"}


def test_hyper_defaults_are_floats():
    params = distribute(draws(np.float64)[0])
    assert SGD(params, momentum=0, weight_decay=0).hyper() == {"name": "sgd", "weight_decay": 0.0, "momentum": 0.0,
                                                               "state_dtype": "float32", "rounding": "nearest"}
    hyper = Adagrad(params).hyper()
    assert hyper == {"name": "adagrad", "weight_decay": 0.0, "eps": 1e-8, "state_dtype": "float32", "rounding": "nearest"}
    assert all(type(hyper[key]) is float for key in ("weight_decay", "eps"))


@pytest.mark.parametrize("name, kwargs, fragment", [
    ("adam", {}, "expected optimizer in ('sgd', 'adagrad'), got 'adam'"),
    ("SGD", {}, "got 'SGD'"),
    ("sgd", {"momentum": 1.0}, "0 <= momentum < 1, got 1.0"),
    ("sgd", {"momentum": -0.1}, "0 <= momentum < 1"),
    ("sgd", {"momentum": float("nan")}, "0 <= momentum < 1"),
    ("sgd", {"weight_decay": -0.1}, "weight_decay >= 0, got -0.1"),
    ("adagrad", {"weight_decay": -1.0}, "weight_decay >= 0"),
    ("adagrad", {"eps": 0.0}, "eps > 0, got 0.0"),
    ("adagrad", {"eps": -1e-8}, "eps > 0"),
    ("adagrad", {"eps": float("nan")}, "eps > 0"),
])
def test_make_optimizer_errors(name, kwargs, fragment):
    params = distribute(draws(np.float64)[0])
    with pytest.raises(ValueError) as info:
        make_optimizer(name, params, **kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["sgd", "adagrad"])
def test_nan_weight_decay_rejected(name):
    with pytest.raises(ValueError, match="weight_decay"):
        make_optimizer(name, distribute(draws(np.float64)[0]), weight_decay=float("nan"))
