"""How oriented and how local first-stage filters are: the measures that say whether a
stage learned edges (Le et al.'s and every sparse-coding paper's first result) or noise.

Orientation: each filter is probed with sinusoidal gratings at ``ORIENTATIONS`` angles and
every integer spatial frequency its window holds (1 to k/2 cycles across the window), at
``PHASES`` phases, on every channel at once and on each channel alone (so colour-opponent
filters are probed too). A filter's response to an (angle, frequency) is its largest
``|w . grating|`` over phases and channel patterns; at its preferred frequency (the one with
the largest summed response) the orientation selectivity index is

    OSI = |sum_theta r(theta) exp(2 i theta)| / sum_theta r(theta)

0 for a filter that answers every angle alike, 1 for one that answers a single angle.

Locality: the share of a filter's energy (sum of squared weights) inside its best window of a
quarter of its area (side ceil(k/2)): 0.25 or a little more for noise spread over the window,
towards 1 for a filter confined to one part of it.

Pure NumPy, no MPI: the caller gathers the filters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ORIENTATIONS", "PHASES", "FilterMeasures", "filter_measures", "gratings", "locality",
           "orientation_selectivity"]

ORIENTATIONS = 8
PHASES = 4


def gratings(k: int, channels: int, orientations: int = ORIENTATIONS,
             phases: int = PHASES) -> tuple[np.ndarray, np.ndarray]:
    """The probes for k x k x C filters.

    Returns
    -------
    probes : (F, O, P * G, k, k, C) float64
        Unit-norm gratings (or zeros, where a phase misses a Nyquist wave): F = k // 2
        frequencies (1 to k/2 cycles per window), O orientations (theta = pi o / O), P
        phases times G channel patterns (all channels, then each alone when C > 1).
    thetas : (O,) float64
        The orientations in radians.
    """
    if k < 2 or channels < 1:
        raise ValueError(f"expected a filter side k >= 2 and channels >= 1, got k={k}, channels={channels}")
    thetas = np.pi * np.arange(orientations) / orientations
    freqs = np.arange(1, k // 2 + 1) / k  # cycles per pixel
    phase = 2 * np.pi * np.arange(phases) / phases
    rows, cols = np.meshgrid(np.arange(k) - (k - 1) / 2, np.arange(k) - (k - 1) / 2, indexing="ij")
    along = np.cos(thetas)[:, None, None] * cols + np.sin(thetas)[:, None, None] * rows  # (O, k, k)
    wave = np.cos(2 * np.pi * freqs[:, None, None, None, None] * along[None, :, None]
                  + phase[None, None, :, None, None])  # (F, O, P, k, k)
    patterns = [np.ones(channels)] + ([np.eye(channels)[c] for c in range(channels)] if channels > 1 else [])
    probes = np.concatenate([wave[..., None] * pattern for pattern in patterns], axis=2)  # (F, O, P*G, k, k, C)
    norms = np.sqrt(np.sum(probes**2, axis=(3, 4, 5), keepdims=True))
    # a phase that samples a Nyquist-frequency wave at its zeros leaves nothing: dropped (zero)
    return np.where(norms > 1e-6, probes / np.where(norms > 1e-6, norms, 1.0), 0.0), thetas


def orientation_selectivity(filters: np.ndarray, orientations: int = ORIENTATIONS) -> np.ndarray:
    """The OSI of each filter at its preferred spatial frequency (see the module docstring).

    Parameters
    ----------
    filters : (N, k, k, C) array
        Filters as images (rows, columns, channels), any scale.

    Returns
    -------
    (N,) float64 in [0, 1]; 0 for an all-zero filter.
    """
    w = _as_filters(filters)
    probes, thetas = gratings(w.shape[1], w.shape[3], orientations)
    f, o, g = probes.shape[:3]
    responses = np.abs(w.reshape(len(w), -1) @ probes.reshape(f * o * g, -1).T).reshape(len(w), f, o, g)
    r = responses.max(axis=3)  # (N, F, O): the best phase and channel pattern
    best = np.argmax(r.sum(axis=2), axis=1)  # (N,) preferred frequency
    r = r[np.arange(len(w)), best]  # (N, O)
    total = r.sum(axis=1)
    vector = np.abs(r @ np.exp(2j * thetas))
    return np.where(total > 0, vector / np.where(total > 0, total, 1.0), 0.0)


def locality(filters: np.ndarray) -> np.ndarray:
    """The share of each filter's energy inside its best ceil(k/2) x ceil(k/2) window.

    Parameters
    ----------
    filters : (N, k, k, C) array

    Returns
    -------
    (N,) float64 in [0, 1]; 0 for an all-zero filter.
    """
    w = _as_filters(filters)
    k = w.shape[1]
    side = math.ceil(k / 2)
    energy = np.sum(w**2, axis=3)  # (N, k, k)
    summed = np.zeros((len(w), k + 1, k + 1))
    summed[:, 1:, 1:] = energy.cumsum(axis=1).cumsum(axis=2)  # integral image
    windows = (summed[:, side:, side:] - summed[:, :-side, side:] - summed[:, side:, :-side]
               + summed[:, :-side, :-side])  # (N, k - side + 1, k - side + 1)
    total = energy.sum(axis=(1, 2))
    best = windows.reshape(len(w), -1).max(axis=1)
    return np.where(total > 0, best / np.where(total > 0, total, 1.0), 0.0)


@dataclass(frozen=True)
class FilterMeasures:
    """Summary of a bank of filters: medians (and quartiles) of OSI and locality."""

    count: int
    osi_median: float
    osi_quartiles: tuple[float, float]
    locality_median: float
    locality_quartiles: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        """Plain floats and lists, for JSON."""
        return {"count": self.count, "osi_median": self.osi_median, "osi_quartiles": list(self.osi_quartiles),
                "locality_median": self.locality_median, "locality_quartiles": list(self.locality_quartiles)}


def filter_measures(filters: np.ndarray) -> FilterMeasures:
    """OSI and locality of a bank of (N, k, k, C) filters, summarised."""
    osi, loc = orientation_selectivity(filters), locality(filters)
    quart = lambda v: (float(np.percentile(v, 25)), float(np.percentile(v, 75)))  # noqa: E731
    return FilterMeasures(len(osi), float(np.median(osi)), quart(osi), float(np.median(loc)), quart(loc))


def _as_filters(filters: Any) -> np.ndarray:
    w = np.asarray(filters, dtype=np.float64)
    if w.ndim != 4 or w.shape[1] != w.shape[2] or w.shape[1] < 2 or len(w) == 0:
        raise ValueError(f"expected filters (N, k, k, C) with N >= 1 and k >= 2, got shape {w.shape}")
    return w
