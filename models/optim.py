"""Optimisers and learning-rate schedules. Each rank updates only the weights it owns.

In pure model parallelism every weight and its gradient live on one rank, so an update is
elementwise on local blocks: no gradient all-reduce, and the result is the same on any
number of ranks. Optimiser state (momentum, squared-gradient sums) is held as DistArrays
laid out like the parameters, so checkpoints save and reshard it with them. Updates run in
place, with at most one temporary the size of a parameter block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import distarray as da
from distarray.backend import get_array_module

__all__ = ["Schedule", "Optimizer", "SGD", "Adagrad", "make_optimizer"]


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


class Optimizer:
    """Base: parameters and their state, updated in place on each rank's blocks."""

    name = "base"
    slots: tuple[str, ...] = ()

    def __init__(self, params: Mapping[str, da.DistArray], weight_decay: float = 0.0):
        if not weight_decay >= 0:
            raise ValueError(f"expected weight_decay >= 0, got {weight_decay}")
        self.params = dict(params)
        self.weight_decay = float(weight_decay)
        self.state = {f"{name}.{slot}": da.zeros_like(p) for name, p in self.params.items() for slot in self.slots}

    def hyper(self) -> dict:
        """Hyper-parameters (for the checkpoint manifest)."""
        return {"name": self.name, "weight_decay": self.weight_decay}

    def step(self, grads: Mapping[str, da.DistArray], lr: float, names: list[str] | None = None) -> None:
        """Update the parameters in ``names`` (default all) with ``grads`` at rate ``lr``
        (local: no communication)."""
        for name in self.params if names is None else names:
            w, g = self.params[name].local, grads[name].local
            if self.weight_decay:
                g = g + self.weight_decay * w
            self._update(name, w, g, lr)

    def _update(self, name: str, w, g, lr: float) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Minibatch SGD with (heavy-ball) momentum: ``v = mu v + g; w -= lr v``."""

    name = "sgd"
    slots = ("momentum",)

    def __init__(self, params: Mapping[str, da.DistArray], momentum: float = 0.9, weight_decay: float = 0.0):
        if not 0 <= momentum < 1:
            raise ValueError(f"expected 0 <= momentum < 1, got {momentum}")
        super().__init__(params, weight_decay)
        self.momentum = float(momentum)

    def hyper(self) -> dict:
        return {**super().hyper(), "momentum": self.momentum}

    def _update(self, name: str, w, g, lr: float) -> None:
        v = self.state[f"{name}.momentum"].local
        v *= self.momentum
        v += g
        xp = get_array_module(w)
        w -= xp.asarray(lr, dtype=w.dtype) * v


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), as Le et al. trained with: ``G += g^2; w -= lr g / (sqrt(G) + eps)``."""

    name = "adagrad"
    slots = ("sum_sq",)

    def __init__(self, params: Mapping[str, da.DistArray], eps: float = 1e-8, weight_decay: float = 0.0):
        if not eps > 0:
            raise ValueError(f"expected eps > 0, got {eps}")
        super().__init__(params, weight_decay)
        self.eps = float(eps)

    def hyper(self) -> dict:
        return {**super().hyper(), "eps": self.eps}

    def _update(self, name: str, w, g, lr: float) -> None:
        acc = self.state[f"{name}.sum_sq"].local
        xp = get_array_module(w)
        acc += g * g
        step = xp.sqrt(acc)
        step += self.eps
        xp.divide(g, step, out=step)
        w -= xp.asarray(lr, dtype=w.dtype) * step


def make_optimizer(name: str, params: Mapping[str, da.DistArray], momentum: float = 0.9,
                   weight_decay: float = 0.0, eps: float = 1e-8) -> Optimizer:
    """``"sgd"`` (with momentum) or ``"adagrad"``."""
    if name == "sgd":
        return SGD(params, momentum, weight_decay)
    if name == "adagrad":
        return Adagrad(params, eps, weight_decay)
    raise ValueError(f"expected optimizer 'sgd' or 'adagrad', got {name!r}")
