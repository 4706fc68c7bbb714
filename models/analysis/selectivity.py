"""How well one neuron tells positives from negatives, Le et al.'s (ICML 2012) way, and the
honest protocol for reporting the best neuron.

A neuron's activations ``a`` over N labelled images are thresholded at 20 equally spaced
values between their min and max (``np.linspace(min, max, 20)``); an image is called
positive when ``a > t``. The neuron's accuracy is that of its best threshold. At ``t = max``
nothing is called positive, so every neuron scores at least the all-negative guess.

Choosing the best of thousands of neurons on the images it is scored on flatters it (the
oracle). Here the labelled images are split in two halves, each class split evenly; the
neuron *and* its threshold are chosen on one half and scored on the other, then the halves
swap roles. Every image is scored exactly once by a neuron that never saw it during
selection: the held-out accuracy is the pooled count over both folds.

Pure NumPy, no MPI: the caller gives each rank's own neurons and merges the few candidates
each rank proposes (:func:`top_candidates`, :func:`merge_candidates`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "THRESHOLDS",
    "Candidate",
    "best_thresholds",
    "correct_counts",
    "guess_correct",
    "merge_candidates",
    "score_at",
    "split_halves",
    "threshold_grid",
    "top_candidates",
    "wilson_interval",
]

THRESHOLDS = 20  # Le et al.: 20 equally spaced thresholds between a neuron's min and max
_CHUNK_BYTES = 32 << 20  # cap on the (neurons, thresholds, images) comparison block


def _check(acts: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    acts = np.asarray(acts)
    labels = np.asarray(labels)
    if acts.ndim != 2:
        raise ValueError(f"expected activations (neurons, images), got shape {acts.shape}")
    if labels.dtype != bool or labels.shape != (acts.shape[1],):
        raise ValueError(f"expected boolean labels of shape ({acts.shape[1]},), got {labels.dtype} {labels.shape}")
    return acts, labels


def threshold_grid(acts: np.ndarray, count: int = THRESHOLDS) -> np.ndarray:
    """``count`` equally spaced thresholds from each neuron's min to its max activation.

    Parameters
    ----------
    acts : (n, N) array
        Activations of n neurons on N >= 1 images.

    Returns
    -------
    (n, count) float64
    """
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2 or acts.shape[1] < 1:
        raise ValueError(f"expected activations (neurons, images >= 1), got shape {acts.shape}")
    lo, hi = acts.min(axis=1), acts.max(axis=1)  # (n,)
    return np.linspace(lo, hi, count, axis=1)  # (n, count)


def correct_counts(acts: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many images each neuron gets right at each of its thresholds.

    Parameters
    ----------
    acts : (n, N) array
    labels : (N,) bool
        True for positives.
    thresholds : (n, T) array
        Image i is called positive by neuron j at threshold t when ``acts[j, i] > t``.

    Returns
    -------
    (n, T) int64
    """
    acts, labels = _check(acts, labels)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 2 or thresholds.shape[0] != acts.shape[0]:
        raise ValueError(f"expected thresholds ({acts.shape[0]}, T), got shape {thresholds.shape}")
    n, images = acts.shape
    out = np.empty(thresholds.shape, dtype=np.int64)  # (n, T)
    step = max(1, _CHUNK_BYTES // max(1, thresholds.shape[1] * images))
    for lo in range(0, n, step):
        a = acts[lo:lo + step, None, :].astype(np.float64)  # (c, 1, N)
        said = a > thresholds[lo:lo + step, :, None]  # (c, T, N)
        out[lo:lo + step] = (said == labels).sum(axis=2)
    return out


def best_thresholds(acts: np.ndarray, labels: np.ndarray, count: int = THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Each neuron's best threshold on these images and how many it gets right there
    (the lowest such threshold where several tie).

    Returns
    -------
    correct : (n,) int64
    threshold : (n,) float64
    """
    grid = threshold_grid(acts, count)  # (n, T)
    counts = correct_counts(acts, labels, grid)  # (n, T)
    best = counts.argmax(axis=1)  # (n,) first maximum
    rows = np.arange(len(best))
    return counts[rows, best], grid[rows, best]


def score_at(acts: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many images each neuron gets right at one given threshold each: (n,) int64."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    return correct_counts(acts, labels, thresholds.reshape(-1, 1))[:, 0]


def guess_correct(labels: np.ndarray) -> int:
    """How many images the all-negative guess gets right (the negatives)."""
    return int((~np.asarray(labels, dtype=bool)).sum())


def split_halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the images, each class split evenly (an odd class gives its
    extra image to the first half), shuffled with ``seed``.

    Returns
    -------
    first, second : (N,) bool masks
    """
    labels = np.asarray(labels, dtype=bool)
    rng = np.random.default_rng(seed)
    first = np.zeros(labels.shape, dtype=bool)
    for value in (True, False):
        members = np.flatnonzero(labels == value)
        chosen = rng.permutation(members)[: (len(members) + 1) // 2]
        first[chosen] = True
    return first, ~first


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % for z = 1.96)."""
    if total <= 0:
        raise ValueError(f"expected a positive number of images, got {total}")
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, order=True)
class Candidate:
    """A neuron proposed as the best: sorts best first (most correct, then lowest index).

    Attributes
    ----------
    rank_key : int
        Minus the number correct (so sorting puts the best first).
    index : int
        The neuron's global flat index (row-major over (rows, columns, maps)).
    threshold : float
        Its best threshold on the images it was chosen on.
    """

    rank_key: int
    index: int
    threshold: float

    @property
    def correct(self) -> int:
        """Images right at the threshold, on the images it was chosen on."""
        return -self.rank_key


def top_candidates(correct: np.ndarray, indices: np.ndarray, thresholds: np.ndarray, k: int) -> list[Candidate]:
    """This rank's best ``k`` neurons: most correct first, ties to the lowest global index
    (so the merged winners never depend on how the neurons are split over ranks)."""
    correct, indices = np.asarray(correct), np.asarray(indices)
    if not correct.shape == indices.shape == np.shape(thresholds) or correct.ndim != 1:
        raise ValueError(f"expected correct, indices and thresholds of one shape (n,), got "
                         f"{correct.shape}, {indices.shape}, {np.shape(thresholds)}")
    order = np.lexsort((indices, -correct))[:k]
    return [Candidate(-int(correct[i]), int(indices[i]), float(thresholds[i])) for i in order]


def merge_candidates(proposals: Iterable[Sequence[Candidate]], k: int) -> list[Candidate]:
    """The best ``k`` of every rank's :func:`top_candidates` (the global best ``k``)."""
    return sorted(c for part in proposals for c in part)[:k]
