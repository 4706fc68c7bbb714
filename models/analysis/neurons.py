"""Finding object-selective neurons across ranks: labelled images, the honest two-fold
selection, and the activations of chosen neurons.

Each rank scores the neurons it owns (:mod:`models.analysis.selectivity`) and proposes its best few;
the proposals (a handful of numbers per rank) are all-gathered and merged, so no rank ever
holds another rank's activations. Ties go to the lowest neuron number, so the neurons chosen
do not depend on the number of ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from distarray import comm
from distarray.checkpoint import checkpoint_meta, load_checkpoint

from ..build import build_network, place, preprocess_from_meta
from ..config import Config, parse_config
from ..data import BundledImages, ImageFolder
from ..network import Network
from ..training.checkpoints import latest_checkpoint, parameter_arrays
from .selectivity import (Candidate, best_thresholds, guess_correct, merge_candidates, score_at, split_halves,
                          top_candidates, wilson_interval)

__all__ = ["Fold", "LabelledImages", "Selectivity", "bundled_labelled", "evaluate", "folder_labelled",
           "guess_selectivity", "load_trained", "neuron_rows"]


@dataclass(frozen=True)
class LabelledImages:
    """Images with a face (positive) or not (negative) label.

    Attributes
    ----------
    images : (N, H, W, C) float32
        Normalised like training samples (:func:`models.data.normalise_images`).
    labels : (N,) bool
    source : str
        Where they came from, for the report.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str

    @property
    def positives(self) -> int:
        """How many positives."""
        return int(self.labels.sum())

    @property
    def negatives(self) -> int:
        """How many negatives."""
        return int(len(self.labels) - self.labels.sum())


def _labelled(positives: np.ndarray, negatives: np.ndarray, source: str) -> LabelledImages:
    if not len(positives) or not len(negatives):
        raise ValueError(f"expected positives and negatives, got {len(positives)} and {len(negatives)} images")
    labels = np.r_[np.ones(len(positives), bool), np.zeros(len(negatives), bool)]
    return LabelledImages(np.concatenate([positives, negatives]).astype(np.float32), labels, source)


def bundled_labelled(size: Sequence[int], channels: int, holdout: int = 30) -> LabelledImages:
    """The faces and distractors training on the bundled data leaves out
    (:meth:`BundledImages.heldout_faces`, :meth:`BundledImages.heldout_distractors`)."""
    data = BundledImages(size, channels, holdout=holdout)
    return _labelled(data.heldout_faces(), data.heldout_distractors(),
                     f"bundled held-out set: {holdout} LFW faces; {holdout} LFW non-face patches "
                     f"and {holdout} natural-image crops")


def folder_labelled(positives: str | Path, negatives: str | Path, size: Sequence[int],
                    channels: int) -> LabelledImages:
    """Every image under two folders (central crops, normalised)."""
    pos = ImageFolder(positives, size, channels, crop="centre").all_images()
    neg = ImageFolder(negatives, size, channels, crop="centre").all_images()
    return _labelled(pos, neg, f"positives {positives} ({len(pos)}), negatives {negatives} ({len(neg)})")


@dataclass(frozen=True)
class Fold:
    """One fold of the protocol: a neuron and threshold chosen on one half, scored on the other."""

    neuron: int
    threshold: float
    selection_correct: int
    selection_total: int
    heldout_correct: int
    heldout_total: int

    @property
    def selection_accuracy(self) -> float:
        return self.selection_correct / self.selection_total

    @property
    def heldout_accuracy(self) -> float:
        return self.heldout_correct / self.heldout_total


@dataclass(frozen=True)
class Selectivity:
    """How well the best neuron of one model separates the labelled images.

    Attributes
    ----------
    model : str
    neurons : int
        Neurons compared.
    folds : tuple of Fold
        Choose on half 1 and score on half 2, then the reverse; None entries for a guess.
    oracle : Candidate or None
        The best neuron chosen and scored on all images (flattering: for reference).
    total : int
        Labelled images.
    best : list of Candidate
        The best few on all images, best first (the neurons the figures show).
    """

    model: str
    neurons: int
    folds: tuple[Fold, ...]
    oracle: Candidate | None
    total: int
    best: list[Candidate] = field(default_factory=list)

    @property
    def heldout_correct(self) -> int:
        """Images scored right by a neuron chosen without them (both folds together)."""
        return sum(f.heldout_correct for f in self.folds)

    @property
    def heldout_accuracy(self) -> float:
        return self.heldout_correct / sum(f.heldout_total for f in self.folds)

    @property
    def interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the held-out accuracy."""
        return wilson_interval(self.heldout_correct, sum(f.heldout_total for f in self.folds))

    @property
    def oracle_accuracy(self) -> float | None:
        return None if self.oracle is None else self.oracle.correct / self.total

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        return {
            "model": self.model, "neurons": self.neurons, "images": self.total,
            "heldout_accuracy": self.heldout_accuracy, "heldout_correct": self.heldout_correct,
            "interval95": list(self.interval),
            "folds": [vars(f) | {"threshold": f.threshold if math.isfinite(f.threshold) else None,
                                 "selection_accuracy": f.selection_accuracy, "heldout_accuracy": f.heldout_accuracy}
                      for f in self.folds],
            "oracle": None if self.oracle is None else {"neuron": self.oracle.index, "threshold": self.oracle.threshold,
                                                        "accuracy": self.oracle_accuracy},
            "best": [{"neuron": c.index, "threshold": c.threshold, "accuracy": c.correct / self.total}
                     for c in self.best],
        }


def evaluate(model: str, acts: np.ndarray, indices: np.ndarray, labels: np.ndarray, world: Any,
             seed: int = 0, best: int = 4) -> Selectivity:
    """Score every neuron of every rank and choose honestly (see :mod:`models.analysis.selectivity`).

    Parameters
    ----------
    model : str
        A name for the report.
    acts : (n, N) array
        This rank's neurons' activations on the labelled images.
    indices : (n,) int
        Their global numbers.
    labels : (N,) bool
    world : communicator
        The ranks that share the neurons.
    seed : int
        Fixes the split into halves.
    best : int
        How many of the best neurons (on all images) to return.

    Collective: call on every rank of ``world``; every rank gets the same result.
    """
    labels = np.asarray(labels, dtype=bool)
    halves = split_halves(labels, seed)
    folds = []
    for chosen_on, scored_on in (halves, halves[::-1]):
        correct, thresholds = best_thresholds(acts[:, chosen_on], labels[chosen_on])
        winner = _merged(world, top_candidates(correct, indices, thresholds, 1), 1)[0]
        rows = np.flatnonzero(indices == winner.index)
        mine = int(score_at(acts[rows][:, scored_on], labels[scored_on], [winner.threshold])[0]) if len(rows) else 0
        folds.append(Fold(winner.index, winner.threshold, winner.correct, int(chosen_on.sum()),
                          int(comm.allreduce(world, mine)), int(scored_on.sum())))
    correct, thresholds = best_thresholds(acts, labels)
    top = _merged(world, top_candidates(correct, indices, thresholds, best), best)
    neurons = int(comm.allreduce(world, len(indices)))
    return Selectivity(model, neurons, tuple(folds), top[0], len(labels), top)


def guess_selectivity(labels: np.ndarray, seed: int = 0) -> Selectivity:
    """The all-negative guess scored like a neuron (on each held-out half): a threshold
    of +inf calls nothing positive."""
    labels = np.asarray(labels, dtype=bool)
    folds = tuple(Fold(-1, float("inf"), guess_correct(labels[a]), int(a.sum()), guess_correct(labels[b]),
                       int(b.sum())) for a, b in (lambda h: (h, h[::-1]))(split_halves(labels, seed)))
    return Selectivity("all-negative guess", 0, folds, None, len(labels))


def _merged(world: Any, mine: list[Candidate], k: int) -> list[Candidate]:
    return merge_candidates(comm.allgather(world, mine), k)


def neuron_rows(acts: np.ndarray, indices: np.ndarray, neurons: Sequence[int], world: Any) -> np.ndarray:
    """The activations of ``neurons`` (global numbers), gathered from their owners.

    Returns
    -------
    (len(neurons), N) float64, the same on every rank

    Collective: call on every rank of ``world``.
    """
    rows = np.flatnonzero(np.isin(indices, np.asarray(neurons, dtype=np.int64)))
    found = {int(indices[r]): acts[r] for r in rows}
    merged: dict[int, np.ndarray] = {}
    for part in comm.allgather(world, found):
        merged.update(part)
    missing = [n for n in neurons if int(n) not in merged]
    if missing:
        raise ValueError(f"expected neurons owned by some rank, got unknown neuron numbers {missing}")
    return np.stack([merged[int(n)] for n in neurons])


def load_trained(run: str | Path, world: Any, checkpoint: str | Path | None = None,
                 trained: bool = True) -> tuple[Config, Network, dict[str, Any]]:
    """The network of a training run with the weights of its newest checkpoint (or of
    ``checkpoint``), split over every rank of ``world``.

    The checkpoint is found as ``cots train --resume`` finds it: a save interrupted after its
    shards were written is read from its complete temporary sibling.

    Returns
    -------
    config : Config
        The configuration saved with the checkpoint.
    network : Network
    meta : dict
        The checkpoint's metadata (``step``, ``path``, ...).

    With ``trained=False`` the network keeps its initial weights: the same architecture
    and seed, untrained (a baseline).

    Collective: call on every rank of ``world``.
    """
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run)
    path = comm.broadcast(world, None if path is None else str(path))
    if path is None:
        raise FileNotFoundError(f"expected a run directory with checkpoints (from `cots train`), found none in {run}")
    meta = checkpoint_meta(path, world)
    config = parse_config(meta["config"])
    network = build_network(config, place(config, world, replicas=1, strict=False).grid)
    network.preprocess = preprocess_from_meta(config, meta)
    if trained:
        load_checkpoint(path, parameter_arrays(network), partial=True)
    return config, network, dict(meta, path=str(path))
