"""The neuron analysis's PNG figures: tile scaling, montages (grey and RGB, one tile to many,
labels and frames), histograms of two classes and curves."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from PIL import Image

from models.analysis.figures import save_curves, save_histogram, save_montage, tile_to_unit


def read_png(path):
    """The PNG at ``path``, fully decoded (fails on a truncated file)."""
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        assert im.width > 0 and im.height > 0
        assert im.mode in ("RGB", "RGBA")
        return im.copy()


# --- tile_to_unit ------------------------------------------------------------------------------

def test_each_maps_min_to_0_and_max_to_1():
    tile = np.random.default_rng(0).normal(3.0, 2.0, size=(5, 4, 3))
    out = tile_to_unit(tile, "each")
    assert out.shape == tile.shape
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)
    np.testing.assert_allclose(out, (tile - tile.min()) / (tile.max() - tile.min()))


def test_symmetric_maps_zero_to_half_and_peak_to_an_end():
    tile = np.array([[-2.0, 0.0], [1.0, 0.5]])
    out = tile_to_unit(tile, "symmetric")
    np.testing.assert_allclose(out, [[0.0, 0.5], [0.75, 0.625]])
    positive = tile_to_unit(np.array([0.0, 4.0, 1.0]), "symmetric")
    np.testing.assert_allclose(positive, [0.5, 1.0, 0.625])


@pytest.mark.parametrize("scale", ["each", "symmetric"])
@pytest.mark.parametrize("value", [0.0, 7.5, -1e-30])
def test_constant_tile_is_mid_grey(scale, value):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = tile_to_unit(np.full((3, 3, 1), value), scale)
    if scale == "symmetric" and value != 0.0:
        assert np.all(out == (1.0 if value > 0 else 0.0))  # a constant non-zero tile is all peak
    else:
        assert np.all(out == 0.5)


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match=r"scale must be one of .*'each'.*got 'global'"):
        tile_to_unit(np.zeros((2, 2)), "global")


# --- save_montage ------------------------------------------------------------------------------

def test_montage_of_one_rgb_image(tmp_path):
    images = np.random.default_rng(1).normal(size=(1, 12, 12, 3))
    path = save_montage(images, tmp_path / "sub" / "one.png", title="optimal stimulus", scale="symmetric")
    assert path == tmp_path / "sub" / "one.png"
    read_png(path)


def test_montage_of_48_grey_images_with_labels_and_frames(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.normal(size=(48, 16, 16, 1))
    labels = [f"{v:.2f}" for v in rng.random(48)]
    frames = ["tab:green" if i % 3 == 0 else "tab:red" if i % 3 == 1 else None for i in range(48)]
    small = read_png(save_montage(images[:8], tmp_path / "eight.png"))
    big = read_png(save_montage(images, tmp_path / "all.png", columns=8, title="top images",
                                labels=labels, frames=frames))
    assert big.width == small.width and big.height > 5 * small.height  # 6 rows of 8 tiles


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scale", ["each", "symmetric"])
def test_montage_with_constant_tiles_does_not_warn(tmp_path, channels, scale):
    images = np.random.default_rng(3).normal(size=(5, 8, 8, channels))
    images[0] = 0.0
    images[1] = 2.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        read_png(save_montage(images, tmp_path / "c.png", columns=3, scale=scale))


def test_montage_of_200_images(tmp_path):
    images = np.random.default_rng(4).random(size=(200, 6, 6, 3))
    read_png(save_montage(images, tmp_path / "many.png", columns=20))


@pytest.mark.parametrize("shape", [(0, 8, 8, 1), (8, 8, 1), (2, 8, 8, 2), (2, 8, 8, 4)])
def test_montage_refuses_bad_shapes(tmp_path, shape):
    with pytest.raises(ValueError, match=r"\(N, H, W, C\).*got shape " + re.escape(str(shape))):
        save_montage(np.zeros(shape), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_montage_refuses_unknown_scale_and_wrong_label_count(tmp_path):
    images = np.zeros((3, 4, 4, 1))
    with pytest.raises(ValueError, match="scale must be one of"):
        save_montage(images, tmp_path / "bad.png", scale="global")
    with pytest.raises(ValueError, match=r"labels must have one entry per image \(3\), got 2"):
        save_montage(images, tmp_path / "bad.png", labels=["a", "b"])
    with pytest.raises(ValueError, match=r"frames must have one entry per image \(3\), got 4"):
        save_montage(images, tmp_path / "bad.png", frames=[None] * 4)


def test_montage_refuses_nan(tmp_path):
    images = np.zeros((2, 4, 4, 1))
    images[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="images must be finite, got 1 NaN"):
        save_montage(images, tmp_path / "bad.png")


# --- save_histogram and save_curves ------------------------------------------------------------

def test_histogram_of_two_classes_with_threshold(tmp_path):
    rng = np.random.default_rng(5)
    path = save_histogram(rng.normal(1, 1, 30), rng.normal(0, 1, 200), tmp_path / "h" / "hist.png",
                          threshold=0.7, title="neuron 17")
    read_png(path)


@pytest.mark.parametrize("empty", ["positives", "negatives"])
def test_histogram_with_one_empty_class(tmp_path, empty):
    values = np.array([0.1, 0.4, 0.4])
    pos, neg = (np.array([]), values) if empty == "positives" else (values, np.array([]))
    read_png(save_histogram(pos, neg, tmp_path / "hist.png", threshold=0.3))


def test_histogram_of_equal_values(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        read_png(save_histogram(np.full(4, 2.0), np.full(3, 2.0), tmp_path / "hist.png"))


def test_histogram_refuses_two_empty_classes_and_2d_input(tmp_path):
    with pytest.raises(ValueError, match="got two empty arrays"):
        save_histogram(np.array([]), np.array([]), tmp_path / "hist.png")
    with pytest.raises(ValueError, match=r"positives must be 1-D, got shape \(2, 2\)"):
        save_histogram(np.zeros((2, 2)), np.zeros(3), tmp_path / "hist.png")
    assert not (tmp_path / "hist.png").exists()


def test_curves(tmp_path):
    series = {"neuron 17": np.log1p(np.arange(50)), "neuron 3": [0.1] * 50, "single": [0.5]}
    read_png(save_curves(series, tmp_path / "curves.png", title="activation during ascent"))


def test_curves_refuse_no_series(tmp_path):
    with pytest.raises(ValueError, match="at least one curve"):
        save_curves({}, tmp_path / "curves.png")
