"""Video frames as a training source: frames drawn uniformly over every frame of a folder of
video files, decoded on demand with PyAV (the analogue of Le et al.'s YouTube frames).

PyAV (``pip install 'cots-hpc[video]'``) binds FFmpeg's libraries and ships them in its
wheels: any container and codec FFmpeg reads, frame-accurate seeking by presentation
timestamp, and frames as NumPy arrays without a subprocess (imageio-ffmpeg pipes raw frames
out of an ``ffmpeg`` process and seeks by time in seconds, which is neither exact nor cheap
to restart per sample).

The frame table is built once per folder: every video's stream is demuxed (packets only,
nothing decoded) for the presentation timestamps of its frames, sorted. Frame k of the
folder is then (video v, timestamp t); a sample seeks to the keyframe at or before t and
decodes forward to t, so the frame's bits depend on the file alone, never on what this
process decoded before: a sample is still a function of (seed, step, sample index). The table
(8 bytes per frame) is cached beside the file index with the folder's fingerprint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .folder import StreamingSource
from .index import FileIndex, cached_table
from .readers import resize_shorter

__all__ = ["FRAMES_SUFFIX", "VIDEO_SUFFIXES", "VideoFrames", "frame_table"]

FRAMES_SUFFIX = ".frames.npz"  # the frame table is cached at <file index cache> + this

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv")


def _av() -> Any:
    try:
        import av
    except ImportError as err:
        raise ValueError("data.source 'video' needs PyAV: pip install 'cots-hpc[video]' (or pip install av)") from err
    return av


def video_timestamps(path: Path) -> np.ndarray:
    """The presentation timestamps of every frame of the first video stream of ``path``, in
    the stream's time base, sorted: (frames,) int64.

    Raises
    ------
    ValueError
        The file cannot be opened or demuxed, has no video stream, or a packet without a
        timestamp (the message names the file).
    """
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"cannot read video {path}: no video stream")
            stream = container.streams.video[0]
            pts = []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's flush packet
                if packet.pts is None:
                    raise ValueError(f"cannot read video {path}: a packet without a timestamp")
                pts.append(packet.pts)
    except av.FFmpegError as err:
        raise ValueError(f"cannot read video {path}: {err}") from err
    if not pts:
        raise ValueError(f"cannot read video {path}: no frames")
    return np.sort(np.array(pts, np.int64))


def frame_table(index: FileIndex, on_error: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every video's frame timestamps, one after another.

    Returns
    -------
    pts : (frames,) int64
        Frame timestamps, video by video.
    offsets : (videos + 1,) int64
        Video v's frames are ``pts[offsets[v]:offsets[v + 1]]`` (none for an unreadable one).
    bad : list of str
        Unreadable videos (only with ``on_error="skip"``; with "raise" the first one raises).
    """
    parts, counts, bad = [], [], []
    for v in range(len(index)):
        try:
            parts.append(video_timestamps(index.path(v)))
        except ValueError:
            if on_error == "raise":
                raise
            bad.append(str(index.path(v)))
            parts.append(np.zeros(0, np.int64))
        counts.append(len(parts[-1]))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), offsets, bad


def _cached_frame_table(index: FileIndex, on_error: str, cache: str | Path | None) -> tuple:
    """:func:`frame_table`, kept in ``cache`` (.npz) for an index of the same fingerprint."""
    def build() -> dict[str, np.ndarray]:
        pts, offsets, bad = frame_table(index, on_error)
        return {"pts": pts, "offsets": offsets, "bad": np.array(bad, dtype=str)}

    table = cached_table(cache, f"{index.fingerprint}:{on_error}", build)
    return table["pts"], table["offsets"], [str(b) for b in table["bad"]]


class VideoFrames(StreamingSource):
    """Frames drawn uniformly over every frame of the video files under a folder
    (recursively; .mp4, .m4v, .mov, .avi, .mkv, .webm, .mpg, .mpeg, .ogv in any case), decoded
    on demand, resized so the shorter side is ``ceil(1.15 * max(size))``, then cropped.

    Parameters
    ----------
    root, size, channels, seed, crop, index, cache
        As for :class:`~models.data.folder.ImageFolder` (the folder holds videos); the frame
        table is cached beside ``cache`` (``<cache>.frames.npz``).
    on_error : {"raise", "skip"}
        An unreadable video stops the run (naming it), or is skipped and counted.
    table : (pts, offsets, bad), optional
        The frame table (:func:`frame_table`), when the caller has it: nothing is demuxed here.
    """

    def __init__(self, root: str | Path, size: Sequence[int], channels: int = 3, seed: int = 0,
                 crop: str = "random", on_error: str = "raise", index: FileIndex | None = None,
                 cache: str | Path | None = None, table: tuple | None = None):
        super().__init__(size, channels, seed, crop, on_error)
        _av()
        self.root = Path(root)
        self.index = index if index is not None else FileIndex.cached(self.root, VIDEO_SUFFIXES, cache)
        if not len(self.index):
            raise ValueError(f"no videos under {self.root}: looked for {', '.join(VIDEO_SUFFIXES)} files (any case)")
        table_cache = None if cache is None else Path(str(cache) + FRAMES_SUFFIX)
        if table is None:
            table = _cached_frame_table(self.index, on_error, table_cache)
        self.pts, self.offsets, bad = table
        self.skipped.update(bad)
        if not len(self.pts):
            raise ValueError(f"no readable video under {self.root} ({len(bad)} unreadable)")

    def listing(self) -> dict[str, Any]:
        return {"index": self.index, "table": (self.pts, self.offsets, sorted(self.skipped))}

    def locate(self, k: int) -> tuple[int, int]:
        """(video, frame within it) of frame k of the folder."""
        v = int(np.searchsorted(self.offsets, k, side="right")) - 1
        return v, int(k - self.offsets[v])

    def read(self, k: int) -> np.ndarray:
        av = _av()
        v, _ = self.locate(k)
        target = int(self.pts[k])
        path = self.index.path(v)
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_count = 1  # ranks x threads = cores: the decoder starts no threads of its own
                container.seek(target, stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.pts is not None and frame.pts >= target:
                        return resize_shorter(frame.to_image(), self.shorter, self.mode)  # (h, w, C)
        except av.FFmpegError as err:
            raise ValueError(f"cannot read video {path}: {err}") from err
        raise ValueError(f"cannot read video {path}: frame at timestamp {target} not decoded")

    def item_file(self, k: int) -> str:
        return str(self.index.path(self.locate(k)[0]))

    def __len__(self) -> int:
        return len(self.pts)

    @property
    def videos(self) -> int:
        """Number of video files indexed (readable or not)."""
        return len(self.index)

    def describe(self) -> str:
        return (f"video folder {self.root}: {len(self)} frames of {self.videos} videos, {self.crop} crops "
                f"{self._shape_text()}")
