"""Training data: normalisation, determinism in (seed, step, sample index), the bundled, folder and
array sources, the CIFAR-10 and STL-10 readers, and make_dataset."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

from models.data import ArrayImages, BundledImages, ImageFolder, make_dataset, normalise_images
from models.data.readers import CIFAR10_URL, STL10_URL, read_cifar10, read_stl10

SIZE = (20, 24)


def assert_normalised(images):
    """Every image (N, H, W, C) has mean 0 and standard deviation 1."""
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 1, atol=1e-5)


# --- normalise_images ------------------------------------------------------------------------

def test_normalise_images_mean_0_std_1():
    images = np.random.default_rng(0).integers(0, 256, size=(5, 8, 9, 3), dtype=np.uint8)
    out = normalise_images(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    assert_normalised(out)


def test_normalise_images_ignores_brightness_and_contrast():
    images = np.random.default_rng(1).random((3, 6, 7, 1))
    np.testing.assert_allclose(normalise_images(2.5 * images + 40), normalise_images(images), atol=1e-5)


def test_normalise_constant_image_gives_zeros():
    out = normalise_images(np.full((2, 4, 4, 3), 7, np.uint8))
    assert np.all(out == 0)


def test_normalise_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"expected images \(N, H, W, C\), got shape \(4, 4\)"):
        normalise_images(np.zeros((4, 4)))


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundled():
    return BundledImages(SIZE, channels=3, face_share=0.5, seed=3)


SOURCES = {
    "bundled-rgb": lambda folder: BundledImages(SIZE, 3, face_share=0.5, seed=3),
    "bundled-grey": lambda folder: BundledImages(SIZE, 1, face_share=0.5, seed=3),
    "folder-rgb": lambda folder: ImageFolder(folder, SIZE, 3, seed=3),
    "folder-grey": lambda folder: ImageFolder(folder, SIZE, 1, seed=3),
    "arrays": lambda folder: ArrayImages(np.random.default_rng(0).random((6, *SIZE, 3)), seed=3),
}


# --- determinism in (seed, step), for every source ------------------------------------------

@pytest.mark.parametrize("name", SOURCES)
def test_batch_is_deterministic_in_seed_and_step(name, folder):
    first, second = SOURCES[name](folder), SOURCES[name](folder)
    batch = first.batch(7, 4)
    second.batch(9, 4)  # another call order: batch 7 must not depend on it
    assert batch.tobytes() == first.batch(7, 4).tobytes() == second.batch(7, 4).tobytes()
    assert not np.array_equal(batch, first.batch(8, 4))


@pytest.mark.parametrize("name", SOURCES)
def test_batch_layout_and_normalisation(name, folder):
    source = SOURCES[name](folder)
    batch = source.batch(0, 5)
    channels = 1 if name.endswith("grey") else 3
    assert source.shape == (*SIZE, channels)
    assert batch.shape == (*SIZE, channels, 5) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert_normalised(batch.transpose(3, 0, 1, 2))


@pytest.mark.parametrize("name", SOURCES)
def test_seed_changes_batches_and_describe_is_one_line(name, folder):
    source = SOURCES[name](folder)
    other = SOURCES[name](folder)
    other.seed = 4
    assert not np.array_equal(source.batch(0, 4), other.batch(0, 4))
    assert "\n" not in source.describe() and str(len(source)) in source.describe()


def test_batch_rejects_negative_step_and_empty_batch(bundled):
    with pytest.raises(ValueError, match="expected step >= 0 and sample index >= 0, got step -1 and index 0"):
        bundled.batch(-1, 4)
    with pytest.raises(ValueError, match="expected a batch size >= 1, got 0"):
        bundled.batch(0, 0)
    with pytest.raises(ValueError, match="expected a batch size >= 1, got 0"):
        bundled.batch_with_flags(0, 0)


@pytest.mark.parametrize("name", SOURCES)
def test_a_sample_depends_on_seed_step_and_index_only(name, folder):
    """Any subset of a batch, in any order, is those samples of the whole batch bit for bit:
    a rank drawing its share gets what one process drawing everything would."""
    source = SOURCES[name](folder)
    whole = source.batch(5, 7).transpose(3, 0, 1, 2)  # (7, H, W, C)
    assert source.samples(5, [6, 2, 3]).tobytes() == whole[[6, 2, 3]].tobytes()
    assert source.samples(5, range(0)).shape == (0, *source.shape)
    assert not np.array_equal(source.samples(6, [2]), whole[[2]])


def test_normalise_image_sums_in_float64():
    """A large offset would swamp a float32 sum; the float64 sums keep mean 0 and std 1."""
    image = (1e4 + np.random.default_rng(3).random((64, 64, 3))).astype(np.float32)
    out = normalise_images(image[None])[0]
    reference = (image - image.astype(np.float64).mean()) / image.astype(np.float64).std()
    np.testing.assert_allclose(out, reference, atol=2e-3)
    assert out.dtype == np.float32


# --- BundledImages ----------------------------------------------------------------------------

def test_bundled_flags_match_face_share():
    faces_only = BundledImages(SIZE, face_share=1.0)
    batch, faces = faces_only.batch_with_flags(2, 16)
    assert faces.dtype == bool and faces.all()
    assert batch.tobytes() == faces_only.batch(2, 16).tobytes()
    assert not BundledImages(SIZE, face_share=0.0).batch_with_flags(2, 16)[1].any()


def test_bundled_samples_only_training_faces():
    """With 99 faces held out, every face sample is a crop of the one training face."""
    source = BundledImages(SIZE, channels=1, face_share=1.0, holdout=99)
    assert len(source.faces) == 1 and len(source) == len(source.natural) + 1
    face = source.training_faces()[0].ravel()
    mirror = source.training_faces()[0][:, ::-1].ravel()
    held = source.heldout_faces().reshape(99, -1)
    for sample in source.batch(0, 12).transpose(3, 0, 1, 2).reshape(12, -1):
        best = max(sample @ face, sample @ mirror) / sample.size
        assert best > 0.6 and best > (held @ sample).max() / sample.size


def test_bundled_train_faces_limits_training_not_the_heldout_set():
    few = BundledImages(SIZE, channels=1, face_share=1.0, train_faces=3)
    full = BundledImages(SIZE, channels=1, face_share=1.0)
    assert len(few.faces) == 3 and len(full.faces) == 70
    assert few.training_faces().tobytes() == full.training_faces()[:3].tobytes()
    assert few.heldout_faces().tobytes() == full.heldout_faces().tobytes()
    for bad in (0, 71, 2.5, True):
        with pytest.raises(ValueError, match="expected data.train_faces from 1 to 70"):
            BundledImages(SIZE, train_faces=bad)


def test_bundled_heldout_sets(bundled):
    faces, distractors, training = bundled.heldout_faces(), bundled.heldout_distractors(), bundled.training_faces()
    assert faces.shape == (30, *SIZE, 3) and distractors.shape == (60, *SIZE, 3) and training.shape == (70, *SIZE, 3)
    for images in (faces, distractors, training):
        assert images.dtype == np.float32
        assert_normalised(images)
    assert not any(np.array_equal(face, train) for face in faces for train in training)
    np.testing.assert_array_equal(distractors, BundledImages(SIZE, seed=5).heldout_distractors())
    for images in (faces, distractors):  # grey like the faces: colour is no cue
        np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_bundled_grey_and_no_holdout():
    source = BundledImages((16, 16), channels=1, holdout=0)
    assert source.heldout_faces().shape == (0, 16, 16, 1) and source.heldout_distractors().shape == (0, 16, 16, 1)
    assert source.training_faces().shape == (100, 16, 16, 1)


def test_bundled_needs_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("BundledImages tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert BundledImages((8, 8), channels=1).batch(0, 2).shape == (8, 8, 1, 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"face_share": 1.5}, r"expected face_share in \[0, 1\], got 1.5"),
    ({"holdout": 100}, r"expected holdout in range\(100\), got 100"),
    ({"channels": 2}, "expected channels 1 or 3, got 2"),
    ({"seed": -1}, "expected seed >= 0, got -1"),
])
def test_bundled_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BundledImages(SIZE, **kwargs)


# --- ArrayImages ------------------------------------------------------------------------------

def test_arrays_resize_and_grey_conversion_match_pillow():
    rgb = np.random.default_rng(7).integers(0, 256, size=(3, 10, 12, 3), dtype=np.uint8)
    source = ArrayImages(rgb, labels=np.arange(3), size=(5, 6), channels=1, name="tiny")
    for image, result in zip(rgb, source.images):
        expected = np.asarray(Image.fromarray(image).convert("L").resize((6, 5), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(result[:, :, 0], expected)
    assert source.shape == (5, 6, 1) and source.describe() == "tiny: 3 images, samples 5x6x1"
    assert ArrayImages(rgb[..., :1], channels=3).shape == (10, 12, 3)


def test_arrays_samples_are_the_given_images():
    images = np.random.default_rng(8).random((4, 6, 6, 3))
    expected = normalise_images(images)
    for sample in ArrayImages(images).batch(0, 8).transpose(3, 0, 1, 2):
        assert any(np.array_equal(sample, image) for image in expected)


def test_arrays_errors():
    with pytest.raises(ValueError, match=r"expected images \(N, H, W, C\) with N >= 1, got shape \(0, 4, 4, 3\)"):
        ArrayImages(np.zeros((0, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"expected labels of shape \(2,\), got \(3,\)"):
        ArrayImages(np.zeros((2, 4, 4, 3)), labels=np.zeros(3))
    with pytest.raises(ValueError, match="expected images with 1 or 3 channels and channels 1 or 3, got 4 and 3"):
        ArrayImages(np.zeros((2, 4, 4, 4)), channels=3)


# --- CIFAR-10 and STL-10 readers --------------------------------------------------------------

def write_cifar(root, records_per_file=(2, 1, 1, 1, 1), test_records=3):
    """Random CIFAR-10 binary files; returns {file name: (N, 3073) uint8 records}."""
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(9)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    written = {}
    for name, n in zip(names, (*records_per_file, test_records)):
        records = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, size=n)
        records.tofile(root / name)
        written[name] = records
    return written


def test_cifar10_orientation_and_labels(tmp_path):
    written = write_cifar(tmp_path / "cifar-10-batches-bin")
    images, labels = read_cifar10(tmp_path / "cifar-10-batches-bin", "test")
    records = written["test_batch.bin"]
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8 and images.flags.c_contiguous
    np.testing.assert_array_equal(labels, records[:, 0])
    assert labels.dtype == np.int64
    for n, row, col, channel in [(0, 0, 0, 0), (1, 0, 31, 1), (2, 5, 17, 2), (2, 31, 2, 0)]:
        assert images[n, row, col, channel] == records[n, 1 + channel * 1024 + row * 32 + col]
    train, train_labels = read_cifar10(tmp_path / "cifar-10-batches-bin")
    assert train.shape == (6, 32, 32, 3) and len(train_labels) == 6
    np.testing.assert_array_equal(train_labels[:2], written["data_batch_1.bin"][:, 0])


def test_cifar10_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        read_cifar10(tmp_path, "test")
    assert "test_batch.bin" in str(missing.value) and CIFAR10_URL in str(missing.value)
    (tmp_path / "test_batch.bin").write_bytes(bytes(3074))
    with pytest.raises(ValueError, match="test_batch.bin: .*record size 3073 bytes, got 3074 bytes"):
        read_cifar10(tmp_path, "test")
    with pytest.raises(ValueError, match="expected split one of train, test, got 'valid'"):
        read_cifar10(tmp_path, "valid")


def write_stl(root, split, n, labels=True):
    """A random STL-10 image file (and labels 1 to 10); returns (raw (n, 27648), labels)."""
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(10)
    raw = rng.integers(0, 256, size=(n, 3 * 96 * 96), dtype=np.uint8)
    raw.tofile(root / f"{split}_X.bin")
    y = rng.integers(1, 11, size=n, dtype=np.uint8)
    if labels:
        y.tofile(root / f"{split}_y.bin")
    return raw, y


def test_stl10_orientation_and_labels(tmp_path):
    raw, y = write_stl(tmp_path, "train", 3)
    images, labels = read_stl10(tmp_path, "train")
    assert images.shape == (3, 96, 96, 3) and images.dtype == np.uint8 and images.flags.c_contiguous
    np.testing.assert_array_equal(labels, y.astype(np.int64) - 1)
    for n, row, col, channel in [(0, 0, 0, 0), (1, 0, 95, 1), (2, 7, 40, 2), (2, 95, 3, 0)]:
        assert images[n, row, col, channel] == raw[n, channel * 9216 + col * 96 + row]  # column-major planes
    write_stl(tmp_path, "unlabeled", 2, labels=False)
    unlabeled, none = read_stl10(tmp_path, "unlabeled")
    assert unlabeled.shape == (2, 96, 96, 3) and none is None


def test_stl10_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        read_stl10(tmp_path / "stl10_binary")
    assert "train_X.bin" in str(missing.value) and STL10_URL in str(missing.value)
    (tmp_path / "test_X.bin").write_bytes(bytes(27649))
    with pytest.raises(ValueError, match="test_X.bin: .*record size 27648 bytes, got 27649 bytes"):
        read_stl10(tmp_path, "test")
    write_stl(tmp_path, "train", 2)
    (tmp_path / "train_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(ValueError, match="train_y.bin: expected 2 labels, one per image of train_X.bin, got 3"):
        read_stl10(tmp_path, "train")
    (tmp_path / "train_y.bin").write_bytes(bytes([0, 2]))
    with pytest.raises(ValueError, match="expected labels 1 to 10, got 0 to 2"):
        read_stl10(tmp_path, "train")
    with pytest.raises(ValueError, match="expected split one of train, test, unlabeled, got 'extra'"):
        read_stl10(tmp_path, "extra")


# --- make_dataset -----------------------------------------------------------------------------

def test_make_dataset_every_source(tmp_path, folder):
    bundled = make_dataset({"source": "bundled", "face_share": 1.0, "holdout": 10}, (16, 16), 1, seed=2)
    assert isinstance(bundled, BundledImages) and len(bundled.faces) == 90 and bundled.face_share == 1.0
    assert bundled.shape == (16, 16, 1) and bundled.seed == 2
    images = make_dataset({"source": "folder", "path": str(folder), "crop": "centre"}, (16, 16), 3, seed=0)
    assert isinstance(images, ImageFolder) and images.crop == "centre" and len(images) == 3
    write_cifar(tmp_path / "cifar")
    cifar = make_dataset({"source": "cifar10", "path": tmp_path / "cifar", "split": "test"}, (16, 16), 1, seed=0)
    assert isinstance(cifar, ArrayImages) and cifar.shape == (16, 16, 1) and len(cifar) == 3
    assert cifar.describe() == "cifar10 test: 3 images, samples 16x16x1"
    write_stl(tmp_path / "stl", "train", 2)
    stl = make_dataset({"source": "stl10", "path": tmp_path / "stl"}, (96, 96), 3, seed=0)
    assert stl.shape == (96, 96, 3) and len(stl) == 2 and stl.labels is not None
    assert stl.batch(0, 2).shape == (96, 96, 3, 2)


@pytest.mark.parametrize("spec, message", [
    ({"source": "foo"}, "expected data.source one of bundled, folder, video, shards, cifar10, stl10, got 'foo'"),
    ({}, "expected data.source one of bundled, folder, video, shards, cifar10, stl10, got None"),
    ({"source": "folder"}, r"missing data.path for data.source 'folder' \(accepted: path, crop, on_error\)"),
    ({"source": "cifar10", "path": "x", "size": 3, "crop": "centre"},
     r"unknown data.crop, data.size for data.source 'cifar10' \(accepted: path, split\)"),
    ({"source": "bundled", "path": "x"}, r"unknown data.path for data.source 'bundled' \(accepted: face_share, holdout, train_faces\)"),
])
def test_make_dataset_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        make_dataset(spec, SIZE, 3, seed=0)


def test_sample_generator_is_the_reused_one_and_counter_based(bundled):
    """The public generator and the thread's reused one give the same stream; samples of
    another step or index get other streams."""
    a = bundled.sample_rng(4, 9).random(5)
    assert np.array_equal(a, bundled._reused_rng(4, 9).random(5))
    assert not np.array_equal(a, bundled.sample_rng(4, 10).random(5))
    assert not np.array_equal(a, bundled.sample_rng(5, 9).random(5))
