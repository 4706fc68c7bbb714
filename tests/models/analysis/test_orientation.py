"""The first-stage measures: OSI ~0 on isotropic filters, high on gratings and Gabors, low
on noise; locality of a confined filter against a spread one."""

from __future__ import annotations

import numpy as np
import pytest

from models.analysis.orientation import filter_measures, gratings, locality, orientation_selectivity

K = 8
ROWS, COLS = np.mgrid[-(K - 1) / 2:K / 2, -(K - 1) / 2:K / 2]


def as_bank(*images: np.ndarray, channels: int = 1) -> np.ndarray:
    return np.stack([np.repeat(image[:, :, None], channels, axis=2) for image in images])  # (N, k, k, C)


def test_isotropic_filters_score_zero():
    blob = np.exp(-(ROWS**2 + COLS**2) / 4.5)
    dog = np.exp(-(ROWS**2 + COLS**2) / 2) - 0.5 * np.exp(-(ROWS**2 + COLS**2) / 8)
    assert np.all(orientation_selectivity(as_bank(blob, dog)) < 0.02)
    assert np.all(orientation_selectivity(as_bank(blob, channels=3)) < 0.02)


@pytest.mark.parametrize("channels", [1, 3])
def test_gratings_and_gabors_are_selective(channels):
    probes, thetas = gratings(K, channels)
    assert probes.shape == (K // 2, 8, 4 * (1 + (channels > 1) * channels), K, K, channels)
    norms = np.sum(probes**2, axis=(3, 4, 5))
    assert np.all(np.isclose(norms, 1.0) | (norms == 0.0))  # unit norm, or nothing (a phase at Nyquist)
    assert np.isclose(norms, 1.0).mean() > 0.9
    pure = probes[2, 3, 0]  # 3 cycles across the window at 67.5 degrees
    gabor = np.exp(-(ROWS**2 + COLS**2) / 4.5) * np.cos(2 * np.pi * COLS / 4)
    osi = orientation_selectivity(np.stack([pure, as_bank(gabor, channels=channels)[0]]))
    assert osi[0] > 0.8 and osi[1] > 0.6
    rotated = orientation_selectivity(as_bank(gabor.T, channels=channels))
    assert rotated[0] == pytest.approx(osi[1], abs=1e-9)  # the measure does not prefer an angle


def test_noise_scores_low_and_colour_opponent_filters_are_probed():
    noise = np.random.default_rng(0).uniform(-1, 1, (2000, K, K, 3))
    assert 0.05 < np.median(orientation_selectivity(noise)) < 0.2
    edge = np.zeros((K, K, 3))
    edge[:, :, 0] = np.cos(2 * np.pi * COLS / 4)  # red against green: a luminance probe alone misses it
    edge[:, :, 1] = -edge[:, :, 0]
    assert orientation_selectivity(edge[None])[0] > 0.6


def test_locality():
    spot = np.zeros((K, K))
    spot[1:3, 5:7] = 1.0
    flat = np.ones((K, K))
    loc = locality(as_bank(spot, flat))
    assert loc[0] == pytest.approx(1.0) and loc[1] == pytest.approx(0.25)
    assert locality(np.zeros((1, K, K, 1)))[0] == 0.0 and orientation_selectivity(np.zeros((1, K, K, 1)))[0] == 0.0


def test_summary_and_bad_input():
    measures = filter_measures(np.random.default_rng(1).standard_normal((50, K, K, 1)))
    assert measures.count == 50 and measures.osi_quartiles[0] <= measures.osi_median <= measures.osi_quartiles[1]
    assert set(measures.as_dict()) == {"count", "osi_median", "osi_quartiles", "locality_median",
                                       "locality_quartiles"}
    with pytest.raises(ValueError, match=r"expected filters \(N, k, k, C\)"):
        orientation_selectivity(np.zeros((3, 8, 7, 1)))
