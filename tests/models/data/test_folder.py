"""Streaming image folders: the cached file index, decoding on demand, and bad files
(raise names the file; skip counts it and stays deterministic)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from models.data import FileIndex, ImageFolder, make_dataset, normalise_images
from models.data.index import folder_fingerprint
from models.data.readers import IMAGE_SUFFIXES

from .helpers import write_image, write_truncated_jpeg, write_with_truncated

SIZE = (20, 24)


# --- the index --------------------------------------------------------------------------------

def test_index_lists_images_in_relative_path_order(folder):
    index = FileIndex.scan(folder, IMAGE_SUFFIXES)
    assert [index.relative(k) for k in range(len(index))] == ["a/wide.PNG", "b/c/grey.jpg", "tall.JpEg"]
    assert list(index.sizes) == [os.path.getsize(folder / index.relative(k)) for k in range(3)]
    assert index.nbytes == index.names.nbytes + 8 * (2 * len(index) + 1)


def test_index_cache_is_reused_until_the_folder_changes(tmp_path):
    root = tmp_path / "images"
    write_image(root / "one.png", (30, 30), "L")
    cache = tmp_path / "run" / "index.npz"
    first = FileIndex.cached(root, IMAGE_SUFFIXES, cache)
    assert cache.is_file() and len(first) == 1
    stamp = cache.stat().st_mtime_ns
    again = FileIndex.cached(root, IMAGE_SUFFIXES, cache)
    assert cache.stat().st_mtime_ns == stamp and again.fingerprint == first.fingerprint  # read, not rebuilt
    write_image(root / "sub" / "two.png", (30, 30), "L")  # a new directory and file: a new fingerprint
    assert folder_fingerprint(root) != first.fingerprint
    grown = FileIndex.cached(root, IMAGE_SUFFIXES, cache)
    assert [grown.relative(k) for k in range(len(grown))] == ["one.png", "sub/two.png"]
    assert FileIndex.load(cache, tmp_path / "elsewhere") is None  # an index of another folder is not used


def test_index_of_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder .*missing not found"):
        FileIndex.scan(tmp_path / "missing", IMAGE_SUFFIXES)


# --- decoding on demand -----------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_folder_resizes_shorter_side(folder, channels):
    source = ImageFolder(folder, SIZE, channels)  # shorter side ceil(1.15 * 24) = 28
    images = [source.read(k) for k in range(len(source))]
    assert [image.shape for image in images] == [(28, 42, channels), (28, 28, channels), (50, 28, channels)]
    assert all(image.dtype == np.uint8 for image in images)


def test_folder_holds_no_images(folder):
    source = ImageFolder(folder, SIZE)
    source.batch(0, 8)
    assert not any(isinstance(v, np.ndarray) and v.ndim >= 3 for v in vars(source).values())
    assert [p.relative_to(folder).as_posix() for p in source.files] == ["a/wide.PNG", "b/c/grey.jpg", "tall.JpEg"]
    assert len(source) == 3 and "3 images" in source.describe()


def test_folder_centre_crops(tmp_path):
    pixels = np.random.default_rng(5).integers(0, 256, size=(28, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "one.png")  # shorter side already 28: no resampling
    source = ImageFolder(tmp_path, SIZE, crop="centre")
    expected = normalise_images(pixels[None, 4:24, 8:32])  # (1, 20, 24, 3)
    np.testing.assert_array_equal(source.all_images(), expected)
    np.testing.assert_array_equal(source.batch(0, 2).transpose(3, 0, 1, 2), np.concatenate([expected] * 2))


def test_folder_random_crops_come_from_the_image(tmp_path):
    pixels = np.random.default_rng(6).integers(0, 256, size=(28, 40), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "one.png")
    source = ImageFolder(tmp_path, SIZE, channels=1)
    windows = [pixels[i:i + 20, j:j + 24] for i in range(9) for j in range(17)]
    candidates = normalise_images(np.array([w for win in windows for w in (win, win[:, ::-1])])[..., None])
    for sample in source.batch(1, 6).transpose(3, 0, 1, 2):
        assert any(np.array_equal(sample, candidate) for candidate in candidates)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder .*missing not found"):
        ImageFolder(tmp_path / "missing", SIZE)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("text")
    with pytest.raises(ValueError, match=r"no images under .*empty: looked for \.jpg, \.jpeg, \.png"):
        ImageFolder(tmp_path / "empty", SIZE)
    (tmp_path / "empty" / "bad.png").write_bytes(b"not a png")
    source = ImageFolder(tmp_path / "empty", SIZE)  # listing reads no file
    with pytest.raises(ValueError, match=r"cannot read image .*bad\.png"):
        source.batch(0, 1)
    with pytest.raises(ValueError, match="expected crop one of random, centre, got 'middle'"):
        ImageFolder(tmp_path / "empty", SIZE, crop="middle")
    with pytest.raises(ValueError, match="expected on_error one of raise, skip, got 'ignore'"):
        ImageFolder(tmp_path / "empty", SIZE, on_error="ignore")


# --- bad files --------------------------------------------------------------------------------

@pytest.fixture()
def with_truncated(tmp_path):
    return write_with_truncated(tmp_path)


def test_truncated_jpeg_raises_naming_the_file(with_truncated):
    source = ImageFolder(with_truncated, SIZE)
    with pytest.raises(ValueError, match=r"cannot read image .*cut\.jpg"):
        source.batch(0, 32)


def test_skip_counts_bad_files_and_stays_deterministic(with_truncated):
    first = ImageFolder(with_truncated, SIZE, on_error="skip", seed=1)
    batch = first.batch(0, 32)
    assert first.skipped == {str(with_truncated / "cut.jpg")}
    second = ImageFolder(with_truncated, SIZE, on_error="skip", seed=1)
    assert second.samples(0, range(16, 32)).tobytes() == batch.transpose(3, 0, 1, 2)[16:].tobytes()
    assert first.all_images().shape == (4, *SIZE, 3)


def test_skip_with_no_readable_file(tmp_path):
    write_truncated_jpeg(tmp_path / "cut.jpg")
    source = make_dataset({"source": "folder", "path": str(tmp_path), "on_error": "skip"}, SIZE, 3, seed=0)
    with pytest.raises(ValueError, match="no readable file among 64 drawn for one sample"):
        source.batch(0, 1)
