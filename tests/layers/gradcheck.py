"""Finite-difference gradient checks shared by the layer tests (serial, float64)."""

from __future__ import annotations

from typing import Callable

import numpy as np


def check_gradient(loss: Callable[[], float], param: np.ndarray, grad: np.ndarray, rng: np.random.Generator,
                   samples: int = 24, h: float = 1e-6) -> float:
    """Largest relative error between ``grad`` and central differences of ``loss`` over
    ``samples`` random entries of ``param`` (modified in place and restored).

    The error of an entry is |fd - g| / max(|fd|, |g|, 1e-3 * rms(grad)), so entries
    whose gradient is tiny against the rest are judged on the gradient's scale.
    """
    assert grad.shape == param.shape, (grad.shape, param.shape)
    scale = 1e-3 * float(np.sqrt(np.mean(grad**2))) + 1e-300
    worst = 0.0
    flat = param.reshape(-1)
    for index in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
        keep = flat[index]
        flat[index] = keep + h
        up = loss()
        flat[index] = keep - h
        down = loss()
        flat[index] = keep
        fd = (up - down) / (2 * h)
        g = grad.reshape(-1)[index]
        worst = max(worst, abs(fd - g) / max(abs(fd), abs(g), scale))
    return worst
