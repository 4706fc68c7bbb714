"""Optimisers and learning-rate schedules. Each rank updates only the weights it owns.

In pure model parallelism every weight and its gradient live on one rank, so an update is
elementwise on local blocks: no gradient all-reduce, and the result is the same on any
number of ranks. Optimiser state (momentum, squared-gradient sums) is held as DistArrays
laid out like the parameters, so checkpoints save and reshard it with them. A parameter's
state is allocated at its first update and freed by :meth:`Optimizer.release`, so greedy
training holds state only for the stage it trains. Updates run in place, chunk by chunk
(:data:`UPDATE_CHUNK` elements), so their temporaries stay small however big a block is.
The state may be stored in 16 bits (``state_dtype``: bfloat16 or float16, see
:mod:`models.precision`) with float32 arithmetic, to halve its memory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

import distarray as da
from distarray.backend import get_array_module

from .precision import ROUNDINGS, decode, encode, storage_dtype

__all__ = ["Schedule", "Optimizer", "SGD", "Adagrad", "make_optimizer", "check_hyper", "OPTIMIZERS"]


@dataclass(frozen=True)
class Schedule:
    """Learning rate at each step: linear warm-up, then constant, cosine or step decay.

    Attributes
    ----------
    lr : float
        Peak learning rate.
    kind : {"constant", "cosine", "step"}
        Decay after warm-up: none, cosine to ``lr * final`` at ``total`` steps, or times
        ``factor`` every ``every`` steps.
    total : int
        Steps of the run (cosine's horizon).
    warmup : int
        Steps of linear warm-up from ``lr / warmup``.
    final, factor, every
        Parameters of the cosine and step decays.
    """

    lr: float
    kind: str = "constant"
    total: int = 1
    warmup: int = 0
    final: float = 0.0
    factor: float = 0.5
    every: int = 1000

    KINDS = ("constant", "cosine", "step")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"expected a schedule in {self.KINDS}, got {self.kind!r}")
        if not self.lr > 0 or self.warmup < 0 or self.total < 1 or self.every < 1:
            raise ValueError(f"expected lr > 0, warmup >= 0, total >= 1 and every >= 1, got {self}")
        if not 0 <= self.final <= 1 or not 0 < self.factor <= 1:
            raise ValueError(f"expected 0 <= final <= 1 and 0 < factor <= 1, got final={self.final}, factor={self.factor}")

    def __call__(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.kind == "cosine":
            t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
            return self.lr * (self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * t)))
        if self.kind == "step":
            return self.lr * self.factor ** ((step - self.warmup) // self.every)
        return self.lr


def check_hyper(momentum: float = 0.0, weight_decay: float = 0.0, eps: float = 1.0) -> None:
    """Raise ValueError unless 0 <= ``momentum`` < 1, ``weight_decay`` >= 0 and ``eps`` > 0
    (the one check of the optimisers' hyper-parameters: the constructors and the
    configuration call it)."""
    if not weight_decay >= 0:
        raise ValueError(f"expected weight_decay >= 0, got {weight_decay}")
    if not 0 <= momentum < 1:
        raise ValueError(f"expected 0 <= momentum < 1, got {momentum}")
    if not eps > 0:
        raise ValueError(f"expected eps > 0, got {eps}")


class Optimizer:
    """Base: parameters and their state, updated in place on each rank's blocks."""

    name = "base"
    slots: tuple[str, ...] = ()

    def __init__(self, params: Mapping[str, da.DistArray], weight_decay: float = 0.0,
                 state_dtype: str = "float32", rounding: str = "nearest"):
        check_hyper(weight_decay=weight_decay)
        self.params = dict(params)
        self.weight_decay = float(weight_decay)
        self.state: dict[str, da.DistArray] = {}  # "{param}.{slot}", allocated at first update
        self.storage = check_storage(state_dtype, rounding, [p.dtype for p in self.params.values()])
        self.rounding = rounding

    def _names(self, names: Iterable[str] | None) -> list[str]:
        chosen = list(self.params) if names is None else list(names)
        unknown = [n for n in chosen if n not in self.params]
        if unknown:
            raise KeyError(f"expected parameter names from {sorted(self.params)}, got {unknown}")
        return chosen

    def ensure_state(self, names: Iterable[str] | None = None) -> None:
        """Allocate (as zeros) the state of the parameters in ``names`` (default all) that
        have none yet (local: no communication)."""
        for name in self._names(names):
            for slot in self.slots:
                if f"{name}.{slot}" not in self.state:
                    self.state[f"{name}.{slot}"] = _zeros_stored(self.params[name], self.storage)

    def release(self, names: Iterable[str]) -> None:
        """Free the state of the parameters in ``names`` (a greedy stage that is done); a
        later update of one starts again from zero state."""
        for name in self._names(names):
            for slot in self.slots:
                self.state.pop(f"{name}.{slot}", None)

    def hyper(self) -> dict:
        """Hyper-parameters (for the checkpoint manifest)."""
        return {"name": self.name, "weight_decay": self.weight_decay, "state_dtype": self.storage,
                "rounding": self.rounding}

    def step(self, grads: Mapping[str, da.DistArray], lr: float, names: list[str] | None = None,
             salt: int = 0) -> None:
        """Update the parameters in ``names`` (default all) with ``grads`` at rate ``lr``
        (local: no communication). ``salt`` (the training step) seeds stochastic rounding."""
        names = self._names(names)
        self.ensure_state(names)
        for name in names:
            state = [self.state[f"{name}.{slot}"].local for slot in self.slots]
            self.update_block(self.params[name].local, grads[name].local, state, lr, salt)

    def update_block(self, w, g, state: list, lr: float, salt: int = 0) -> None:
        """Update one local block ``w`` in place from its gradient ``g`` and state arrays
        (same shapes), chunk by chunk so that temporaries stay small. State stored in 16
        bits is decoded into a float32 chunk, updated and encoded back."""
        stored = self.storage != "float32"
        xp = get_array_module(w)
        work = [xp.empty(min(w.size, UPDATE_CHUNK), dtype=xp.float32) for _ in state] if stored else None
        for part in _parts(w, g, *state):
            wc, gc, *sc = part
            if self.weight_decay:
                gc = gc + self.weight_decay * wc
            if not stored:
                self._update(wc, gc, sc, lr)
                continue
            values = [decode(s, self.storage, buf[: s.size].reshape(s.shape)) for s, buf in zip(sc, work)]
            self._update(wc, gc, values, lr)
            for s, v in zip(sc, values):
                encode(v, self.storage, s, self.rounding, salt)

    def _update(self, w, g, state: list, lr: float) -> None:
        """Update ``w`` in place from ``g`` and this optimiser's ``state`` slots (same shapes)."""
        raise NotImplementedError


#: Elements per chunk of an update: the update's temporaries are this size, not a block's.
UPDATE_CHUNK = 1 << 20


def check_storage(state_dtype: str, rounding: str, param_dtypes: Iterable[Any]) -> str:
    """``state_dtype`` when it can hold this optimiser's state, else one clear ValueError."""
    storage_dtype(state_dtype)  # names the formats when unknown
    if rounding not in ROUNDINGS:
        raise ValueError(f"expected train.state_rounding in {ROUNDINGS}, got {rounding!r}")
    if rounding == "stochastic" and state_dtype != "bfloat16":
        raise ValueError(f"expected train.state_dtype = \"bfloat16\" with stochastic rounding, got {state_dtype!r}")
    if state_dtype != "float32":
        others = sorted({str(np.dtype(d)) for d in param_dtypes} - {"float32"})
        if others:
            raise ValueError(f"expected float32 parameters for {state_dtype} optimiser state, got {others}")
    return state_dtype


def _zeros_stored(param: da.DistArray, storage: str) -> da.DistArray:
    """Zero state for ``param`` in its layout, held in ``storage`` (float32: the param's dtype)."""
    xp = get_array_module(param.local)
    if storage == "float32":
        return da.zeros_like(param)
    layout = dataclasses.replace(param.layout, dtype=storage_dtype(storage))
    return da.DistArray(xp.zeros(param.local.shape, dtype=layout.dtype), layout, param.grid)


def _parts(*arrays):
    """Matching flat chunks of same-shaped arrays (views; the whole arrays when any is not
    contiguous)."""
    if not all(a.flags.c_contiguous for a in arrays):
        yield arrays
        return
    flat = [a.reshape(-1) for a in arrays]
    for start in range(0, flat[0].size, UPDATE_CHUNK):
        yield tuple(f[start:start + UPDATE_CHUNK] for f in flat)


class SGD(Optimizer):
    """Minibatch SGD with (heavy-ball) momentum: ``v = mu v + g; w -= lr v``."""

    name = "sgd"
    slots = ("momentum",)

    def __init__(self, params: Mapping[str, da.DistArray], momentum: float = 0.9, weight_decay: float = 0.0,
                 state_dtype: str = "float32", rounding: str = "nearest"):
        check_hyper(momentum=momentum)
        super().__init__(params, weight_decay, state_dtype, rounding)
        self.momentum = float(momentum)

    def hyper(self) -> dict:
        return {**super().hyper(), "momentum": self.momentum}

    def _update(self, w, g, state: list, lr: float) -> None:
        (v,) = state
        v *= self.momentum
        v += g
        xp = get_array_module(w)
        w -= xp.asarray(lr, dtype=w.dtype) * v


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), as Le et al. trained with: ``G += g^2; w -= lr g / (sqrt(G) + eps)``."""

    name = "adagrad"
    slots = ("sum_sq",)

    def __init__(self, params: Mapping[str, da.DistArray], eps: float = 1e-8, weight_decay: float = 0.0,
                 state_dtype: str = "float32", rounding: str = "nearest"):
        check_hyper(eps=eps)
        super().__init__(params, weight_decay, state_dtype, rounding)
        self.eps = float(eps)

    def hyper(self) -> dict:
        return {**super().hyper(), "eps": self.eps}

    def _update(self, w, g, state: list, lr: float) -> None:
        (acc,) = state
        xp = get_array_module(w)
        acc += g * g
        step = xp.sqrt(acc)
        step += self.eps
        xp.divide(g, step, out=step)
        w -= xp.asarray(lr, dtype=w.dtype) * step


#: The optimisers by name (what ``train.optimizer`` accepts).
OPTIMIZERS = ("sgd", "adagrad")


def make_optimizer(name: str, params: Mapping[str, da.DistArray], momentum: float = 0.9,
                   weight_decay: float = 0.0, eps: float = 1e-8, state_dtype: str = "float32",
                   rounding: str = "nearest") -> Optimizer:
    """``"sgd"`` (with momentum) or ``"adagrad"``, its state stored as ``state_dtype``."""
    if name == "sgd":
        return SGD(params, momentum, weight_decay, state_dtype, rounding)
    if name == "adagrad":
        return Adagrad(params, eps, weight_decay, state_dtype, rounding)
    raise ValueError(f"expected optimizer in {OPTIMIZERS}, got {name!r}")
