"""Per-neuron accuracy and the honest protocol against brute-force loops (serial)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import models.analysis.selectivity as sel
from distarray import comm
from models.analysis.neurons import evaluate, guess_selectivity
from models.analysis.selectivity import (Candidate, best_thresholds, correct_counts, merge_candidates, score_at, split_halves,
                                threshold_grid, top_candidates, wilson_interval)


def brute_best(a: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """One neuron, by loops: the best count over 20 thresholds (first best) and its threshold."""
    lo, hi = float(min(a)), float(max(a))
    best, best_t = -1, None
    for k in range(20):
        t = np.linspace(lo, hi, 20)[k]
        right = sum(1 for v, y in zip(a, labels) if (v > t) == y)
        if right > best:
            best, best_t = right, t
    return best, best_t


def data(n=37, images=29, seed=0, integer=False):
    rng = np.random.default_rng(seed)
    acts = rng.integers(-3, 4, (n, images)).astype(float) if integer else rng.standard_normal((n, images))
    labels = rng.random(images) < 0.35
    labels[:2] = [True, False]
    acts[3] = 1.5  # a constant neuron
    return acts, labels


@pytest.mark.parametrize("integer", [False, True])
def test_best_thresholds_equal_brute_force(integer):
    acts, labels = data(integer=integer)
    correct, thresholds = best_thresholds(acts, labels)
    for j in range(len(acts)):
        want, want_t = brute_best(acts[j], labels)
        assert correct[j] == want and math.isclose(thresholds[j], want_t, rel_tol=1e-12, abs_tol=1e-15), j


def test_every_neuron_scores_at_least_the_guess():
    acts, labels = data()
    correct, _ = best_thresholds(acts, labels)
    assert correct.min() >= sel.guess_correct(labels) == (~labels).sum()
    assert correct[3] == (~labels).sum()  # a constant neuron can only guess


def test_chunking_gives_the_same_counts(monkeypatch):
    acts, labels = data(n=50)
    grid = threshold_grid(acts)
    whole = correct_counts(acts, labels, grid)
    monkeypatch.setattr(sel, "_CHUNK_BYTES", 20 * 29 * 3)  # three neurons per block
    np.testing.assert_array_equal(correct_counts(acts, labels, grid), whole)


def test_threshold_grid_and_score_at():
    acts, labels = data()
    grid = threshold_grid(acts)
    assert grid.shape == (len(acts), 20)
    np.testing.assert_array_equal(grid[:, 0], acts.min(axis=1))
    np.testing.assert_array_equal(grid[:, -1], acts.max(axis=1))
    counts = correct_counts(acts, labels, grid)
    np.testing.assert_array_equal(score_at(acts, labels, grid[:, 7]), counts[:, 7])


def test_bad_input_is_named():
    acts, labels = data()
    with pytest.raises(ValueError, match="boolean labels"):
        best_thresholds(acts, labels.astype(int))
    with pytest.raises(ValueError, match=r"activations \(neurons, images"):
        best_thresholds(acts[0], labels)
    with pytest.raises(ValueError, match="thresholds"):
        correct_counts(acts, labels, np.zeros((2, 3)))


def test_split_halves_balanced_disjoint_deterministic():
    labels = np.array([True] * 7 + [False] * 12)
    a, b = split_halves(labels, seed=3)
    assert not (a & b).any() and (a | b).all()
    assert (labels[a].sum(), labels[b].sum()) == (4, 3) and ((~labels)[a].sum(), (~labels)[b].sum()) == (6, 6)
    np.testing.assert_array_equal(split_halves(labels, seed=3)[0], a)
    assert not np.array_equal(split_halves(labels, seed=4)[0], a)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert abs(lo - 0.4038) < 1e-4 and abs(hi - 0.5962) < 1e-4
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and abs(hi - 0.2775) < 1e-4
    with pytest.raises(ValueError):
        wilson_interval(1, 0)


def test_candidates_merged_over_any_split_equal_a_global_sort():
    rng = np.random.default_rng(1)
    correct = rng.integers(0, 6, 40)  # many ties
    indices = rng.permutation(40) + 100
    thresholds = rng.standard_normal(40)
    want = sorted(zip(-correct, indices))[:5]
    for ranks in (1, 2, 3, 4):
        parts = np.array_split(np.arange(40), ranks)
        merged = merge_candidates([top_candidates(correct[p], indices[p], thresholds[p], 5) for p in parts], 5)
        assert [(c.rank_key, c.index) for c in merged] == want
        assert all(c.threshold == thresholds[list(indices).index(c.index)] for c in merged)
    assert Candidate(-3, 7, 0.0).correct == 3


def brute_protocol(acts, labels, seed):
    """The two folds by loops: choose (most right, lowest index) on one half, score the other."""
    a, b = split_halves(labels, seed)
    out = []
    for chosen, scored in ((a, b), (b, a)):
        scores = [brute_best(acts[j, chosen], labels[chosen]) for j in range(len(acts))]
        j = max(range(len(acts)), key=lambda j: (scores[j][0], -j))
        t = scores[j][1]
        held = sum(1 for v, y in zip(acts[j, scored], labels[scored]) if (v > t) == y)
        out.append((j, scores[j][0], held))
    return out


def test_evaluate_serial_equals_brute_force():
    acts, labels = data(n=25, images=33, seed=5)
    result = evaluate("m", acts, np.arange(len(acts)), labels, comm.self_comm(), seed=2, best=3)
    want = brute_protocol(acts, labels, 2)
    assert [(f.neuron, f.selection_correct, f.heldout_correct) for f in result.folds] == want
    assert result.heldout_correct == want[0][2] + want[1][2]
    assert math.isclose(result.heldout_accuracy, result.heldout_correct / len(labels))
    everything = [brute_best(acts[j], labels)[0] for j in range(len(acts))]
    assert result.oracle.correct == max(everything) and result.oracle.index == int(np.argmax(everything))
    assert [c.index for c in result.best] == sorted(range(25), key=lambda j: (-everything[j], j))[:3]
    assert result.neurons == 25 and result.as_dict()["heldout_correct"] == result.heldout_correct


def test_guess_scores_the_negatives():
    labels = np.array([True] * 5 + [False] * 10)
    guess = guess_selectivity(labels)
    assert guess.heldout_correct == 10 and guess.oracle is None and guess.oracle_accuracy is None


@pytest.mark.parametrize("correct,total", [(0, 10), (3, 10), (65, 90), (90, 90), (1, 1), (500, 1000)])
def test_wilson_interval_matches_scipy(correct, total):
    """The hand-written interval (no scipy on a training node) against scipy.stats."""
    from scipy.stats import binomtest

    want = binomtest(correct, total).proportion_ci(0.95, method="wilson")
    got = wilson_interval(correct, total, z=1.959963984540054)
    assert got == pytest.approx((want.low, want.high), abs=1e-12)
