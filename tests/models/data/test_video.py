"""Video frames as a source: the frame table, frame-exact seeking, determinism across
processes, unreadable videos (raise names the file; skip counts it)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("av")  # the video extra: installed by `make venv` (the test extra)

from models.data import make_dataset  # noqa: E402
from models.data.video import VideoFrames, video_timestamps  # noqa: E402

from .helpers import write_video  # noqa: E402

SIZE = (16, 24)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    written = {"a/one.mp4": write_video(root / "a" / "one.mp4", 13, seed=1),
               "two.MKV": write_video(root / "two.MKV", 7, seed=2, gop=3)}
    (root / "notes.txt").write_text("not a video")
    return root, written


def test_frame_table_counts_every_frame(videos):
    root, written = videos
    source = VideoFrames(root, SIZE, 3)
    assert len(source) == 20 and source.videos == 2 and list(source.offsets) == [0, 13, 20]
    assert np.all(np.diff(source.pts[:13]) > 0) and "20 frames of 2 videos" in source.describe()
    assert source.locate(12) == (0, 12) and source.locate(13) == (1, 0)


def test_seeking_gives_the_frame_a_sequential_decode_gives(videos):
    """Frame k read alone (seek to the keyframe before it, decode forward) is frame k of the
    video decoded from the start, whatever was read before."""
    import av

    root, _ = videos
    source = VideoFrames(root, SIZE, 3)
    with av.open(str(root / "a" / "one.mp4")) as container:
        decoded = [frame.to_image() for frame in container.decode(video=0)]
    from models.data.readers import resize_shorter
    for k in (9, 2, 12, 0, 5):
        expected = resize_shorter(decoded[k], source.shorter, "RGB")
        np.testing.assert_array_equal(source.read(k), expected)


def test_video_samples_deterministic_across_processes(videos, tmp_path):
    root, _ = videos
    code = ("import sys, hashlib; from models.data.video import VideoFrames;"
            f"s = VideoFrames({str(root)!r}, {SIZE}, 1, seed=4);"
            "print(hashlib.sha256(s.samples(3, [5, 1, 7]).tobytes()).hexdigest())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    here = VideoFrames(root, SIZE, 1, seed=4).batch(3, 8).transpose(3, 0, 1, 2)[[5, 1, 7]]
    import hashlib
    assert runs == {hashlib.sha256(np.ascontiguousarray(here).tobytes()).hexdigest() + "\n"}


def test_frame_table_is_cached_with_the_index(videos, tmp_path):
    root, _ = videos
    cache = tmp_path / "index.npz"
    first = VideoFrames(root, SIZE, 3, cache=cache)
    assert (tmp_path / "index.npz.frames.npz").is_file()
    again = VideoFrames(root, SIZE, 3, cache=cache)
    np.testing.assert_array_equal(again.pts, first.pts)
    rebuilt = VideoFrames(**{"root": root, "size": SIZE, "channels": 3}, **first.listing())
    assert rebuilt.samples(0, [3]).tobytes() == first.samples(0, [3]).tobytes()


def test_unreadable_video_raise_and_skip(videos, tmp_path):
    root, _ = videos
    broken = tmp_path / "mixed"
    write_video(broken / "good.mp4", 5, seed=3)
    (broken / "bad.mp4").write_bytes(b"\x00" * 4096)
    with pytest.raises(ValueError, match=r"cannot read video .*bad\.mp4"):
        VideoFrames(broken, SIZE, 3)
    source = make_dataset({"source": "video", "path": str(broken), "on_error": "skip"}, SIZE, 3, seed=0)
    assert len(source) == 5 and source.skipped == {str(broken / "bad.mp4")}
    assert source.batch(0, 4).shape == (*SIZE, 3, 4)
    with pytest.raises(ValueError, match="no videos under"):
        VideoFrames(root / "a" / "none", SIZE, 3) if (root / "a" / "none").mkdir() is None else None
