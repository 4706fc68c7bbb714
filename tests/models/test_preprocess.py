"""Input preprocessing: the ZCA filter, estimated from patches, flattens their spectrum; LCN
is the layers' LCN with reflected borders; a chain applied to a block with its halo gives the
bits of the whole image's; everything round-trips through JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layers.reference import lcn_reference
from models.preprocess import LocalContrast, Preprocess, Whitening, estimate_whitening, reflect_index


def smooth_images(n=64, size=24, channels=1, seed=0) -> np.ndarray:
    """Correlated images (H, W, C, N): white noise blurred, so neighbouring pixels covary."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size + 4, size + 4, channels, n))
    for axis in (0, 1):
        x = (x + np.roll(x, 1, axis) + np.roll(x, 2, axis)) / 3
    return x[2:-2, 2:-2]


def patch_eigenvalues(images: np.ndarray, side: int) -> np.ndarray:
    h, w = images.shape[:2]
    patches = np.array([images[i:i + side, j:j + side, :, b].ravel() for b in range(images.shape[3])
                        for i in range(0, h - side, 3) for j in range(0, w - side, 3)])
    patches -= patches.mean(axis=0)
    return np.linalg.eigvalsh(patches.T @ patches / len(patches))


def test_reflect_index():
    assert reflect_index(-2, 7, 5).tolist() == [2, 1, 0, 1, 2, 3, 4, 3, 2]


@pytest.mark.parametrize("channels", [1, 3])
def test_whitening_flattens_the_patch_spectrum(channels):
    images = smooth_images(channels=channels)
    before = patch_eigenvalues(images, 3)
    white = estimate_whitening(images, 5, eps=1e-3).apply(images)
    after = patch_eigenvalues(white, 3)
    assert before.max() / before.min() > 50  # smooth images: a steep spectrum
    assert after.max() / after.min() < before.max() / before.min() / 10
    assert white.shape == images.shape and white.dtype == np.float32


@pytest.mark.parametrize("rows,cols", [(slice(0, 24), slice(0, 24)), (slice(0, 7), slice(5, 24)),
                                       (slice(9, 10), slice(0, 3)), (slice(20, 24), slice(11, 17))])
def test_a_block_is_the_same_bits_as_the_whole(rows, cols):
    images = smooth_images(n=5, channels=3)
    whitening = estimate_whitening(images, 7, eps=0.1)
    whole = whitening.apply(images)
    assert np.array_equal(whitening.apply(images, rows, cols), whole[rows, cols])


def test_round_trip_and_errors():
    images = smooth_images(n=8)
    whitening = estimate_whitening(images, 5, eps=0.05, patches=500)
    again = Whitening.from_dict(json.loads(json.dumps(whitening.as_dict())))
    assert np.array_equal(again.kernel, whitening.kernel) and again.eps == 0.05 and again.size == 5
    with pytest.raises(ValueError, match="odd whitening size"):
        estimate_whitening(images, 4, eps=0.1)
    with pytest.raises(ValueError, match="eps > 0"):
        estimate_whitening(images, 5, eps=0.0)
    with pytest.raises(ValueError, match="channels"):
        whitening.apply(np.zeros((24, 24, 3, 1)))
    with pytest.raises(ValueError, match="stored ZCA"):
        Whitening.from_dict({"kind": "pca", "kernel": [[1.0]], "eps": 0.1})


def test_lcn_is_the_layers_lcn_on_the_reflected_image():
    images = smooth_images(n=3, channels=3)
    lcn = LocalContrast(5, 1.25)
    padded = np.pad(images, ((2, 2), (2, 2), (0, 0), (0, 0)), mode="reflect")
    want = lcn_reference(padded, 5, 1.25, 0.1)
    np.testing.assert_allclose(lcn.valid(padded), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(Preprocess((lcn,)).apply(images), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows,cols", [(slice(0, 7), slice(5, 24)), (slice(0, 1), slice(0, 24)),
                                       (slice(20, 24), slice(22, 24)), (slice(9, 15), slice(1, 2))])
def test_a_chain_on_a_block_is_the_same_bits_as_on_the_whole(rows, cols):
    images = smooth_images(n=4, channels=1)
    chain = Preprocess((LocalContrast(5, 1.25), estimate_whitening(images, 7, eps=0.1)))
    whole = chain.apply(images)
    step_by_step = chain.steps[1].apply(Preprocess(chain.steps[:1]).apply(images))
    assert np.array_equal(whole, step_by_step)  # the chain is each step on the whole image in turn
    assert np.array_equal(chain.apply(images, rows, cols), whole[rows, cols])
    again = Preprocess.from_dict(json.loads(json.dumps(chain.as_dict())))
    assert again.steps[0] == chain.steps[0] and np.array_equal(again.steps[1].kernel, chain.steps[1].kernel)
    with pytest.raises(ValueError, match="reach"):
        Preprocess((LocalContrast(45, 5.0), Whitening(np.zeros((7, 7, 1, 1)), 0.1))).apply(images)
