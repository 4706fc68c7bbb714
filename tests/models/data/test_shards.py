"""Tar shards: the member table (cached), reading members by seeking, samples identical to
the same images in a folder, and bad shards or members (raise names them; skip counts them
and stays deterministic)."""

from __future__ import annotations

import gzip
import tarfile

import numpy as np
import pytest

from models.data import ImageFolder, TarShards, make_dataset
from models.data.shards import MEMBERS_SUFFIX, shard_members

from .helpers import write_image, write_shards, write_with_truncated

SIZE = (20, 24)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Seven PNG and JPEG images in two folders (and a file that is not an image)."""
    root = tmp_path_factory.mktemp("images")
    for k in range(7):
        write_image(root / f"d{k % 2}" / f"im{k}.{'png' if k % 3 else 'jpg'}", (40 + 3 * k, 36), "RGB", seed=k)
    (root / "d0" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def shards(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(images, out / "train", per_shard=3)
    return out / "train"


def test_members_are_the_images_in_archive_order(images, shards):
    starts, sizes = shard_members(shards / "shard-00000.tar")
    with tarfile.open(shards / "shard-00000.tar") as tar:
        wanted = [m for m in tar if m.name.endswith((".png", ".jpg"))]
    assert list(starts) == [m.offset_data for m in wanted] and list(sizes) == [m.size for m in wanted]
    source = TarShards(shards, SIZE)
    assert len(source) == 7 and source.shards == 3  # 8 files, 3 a shard; notes.txt is not an image
    data = (shards / "shard-00000.tar").read_bytes()
    first = data[int(source.starts[0]):int(source.starts[0] + source.sizes[0])]
    assert first == (images / "d0" / "im0.jpg").read_bytes()
    assert source.item_file(0) == f"{shards / 'shard-00000.tar'}:d0/im0.jpg"
    assert "7 images in 3 shards" in source.describe()


@pytest.mark.parametrize("crop", ["random", "centre"])
def test_samples_are_those_of_the_same_images_in_a_folder(images, shards, crop):
    folder = ImageFolder(images, SIZE, seed=4, crop=crop)
    packed = TarShards(shards, SIZE, seed=4, crop=crop)
    assert len(folder) == len(packed)
    assert packed.batch(3, 16).tobytes() == folder.batch(3, 16).tobytes()
    assert packed.samples(3, range(5, 11)).tobytes() == folder.samples(3, range(5, 11)).tobytes()


def test_member_table_is_cached_until_a_shard_changes(images, tmp_path):
    root = tmp_path / "shards"
    write_shards(images, root, per_shard=4)
    cache = tmp_path / "run" / "index.npz"
    first = TarShards(root, SIZE, cache=cache)
    table = tmp_path / "run" / ("index.npz" + MEMBERS_SUFFIX)
    assert cache.is_file() and table.is_file()
    stamp = table.stat().st_mtime_ns
    again = TarShards(root, SIZE, cache=cache)
    assert table.stat().st_mtime_ns == stamp and list(again.starts) == list(first.starts)  # read, not rebuilt
    with tarfile.open(root / "shard-00001.tar", "a") as tar:  # rewritten in place: a new size
        tar.add(images / "d0" / "im0.jpg", arcname="extra.jpg")
    grown = TarShards(root, SIZE, cache=cache)
    assert len(grown) == len(first) + 1


def test_listing_builds_the_same_source(shards):
    source = TarShards(shards, SIZE, seed=2)
    copy = make_dataset({"source": "shards", "path": str(shards)}, SIZE, 3, seed=2, listing=source.listing())
    assert copy.batch(0, 8).tobytes() == source.batch(0, 8).tobytes()


def test_shard_errors(tmp_path, images):
    with pytest.raises(FileNotFoundError, match="folder .*missing not found"):
        TarShards(tmp_path / "missing", SIZE)
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match=r"no shards under .*none: looked for uncompressed \.tar files"):
        TarShards(tmp_path / "none", SIZE)
    packed = tmp_path / "gz"
    write_shards(images, packed, per_shard=8)
    tar = packed / "shard-00000.tar"
    tar.write_bytes(gzip.compress(tar.read_bytes()))  # a .tar.gz under a .tar name
    with pytest.raises(ValueError, match=r"cannot read shard .*shard-00000\.tar \(expected an uncompressed tar"):
        TarShards(packed, SIZE)
    with pytest.raises(ValueError, match=r"no images in the 1 shards under .*gz \(1 unreadable"):
        TarShards(packed, SIZE, on_error="skip")


@pytest.fixture()
def with_truncated(tmp_path):
    write_shards(write_with_truncated(tmp_path / "images"), tmp_path / "shards", per_shard=2)
    return tmp_path / "shards"


def test_truncated_member_raises_naming_shard_and_member(with_truncated):
    source = TarShards(with_truncated, SIZE)
    with pytest.raises(ValueError, match=r"cannot read image .*shard-00000\.tar:cut\.jpg"):
        source.batch(0, 32)


def test_skip_counts_bad_members_and_stays_deterministic(with_truncated):
    first = TarShards(with_truncated, SIZE, on_error="skip", seed=1)
    batch = first.batch(0, 32)
    assert first.skipped == {f"{with_truncated / 'shard-00000.tar'}:cut.jpg"}
    second = TarShards(with_truncated, SIZE, on_error="skip", seed=1)
    assert second.samples(0, range(16, 32)).tobytes() == batch.transpose(3, 0, 1, 2)[16:].tobytes()
    assert first.all_images().shape == (4, *SIZE, 3)


def test_shard_cut_after_listing(with_truncated):
    source = TarShards(with_truncated, SIZE)
    last = with_truncated / "shard-00002.tar"
    data = last.read_bytes()
    end = int(source.starts[-1])
    last.write_bytes(data[:end + 10])  # the last member's bytes mostly gone
    with pytest.raises(ValueError, match=r"cannot read image .*shard-00002\.tar:good3\.jpg: expected \d+ bytes, got 10"
                                         r" \(the shard is shorter"):
        source.read(len(source) - 1)
    np.testing.assert_equal(len(source), 5)
