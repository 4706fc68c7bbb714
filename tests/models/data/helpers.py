"""Files for the data tests: images, folders of them, tar shards, videos (PyAV) and broken files."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def write_image(file: Path, size: tuple[int, int], mode: str, fmt: str | None = None, seed: int = 0) -> np.ndarray:
    """A random (w, h) image in ``mode``, saved with Pillow; returns its pixels."""
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(file, format=fmt)
    return pixels


def write_folder(root: Path) -> Path:
    """Nested PNG and JPEG files with mixed-case suffixes, and files that are not images."""
    write_image(root / "b" / "c" / "grey.jpg", (50, 50), "L", seed=1)
    write_image(root / "a" / "wide.PNG", (60, 40), "RGB", seed=2)
    write_image(root / "tall.JpEg", (45, 80), "RGB", "JPEG", seed=3)
    write_image(root / "a" / "skip.gif", (30, 30), "RGB", seed=4)
    (root / "notes.txt").write_text("not an image")
    return root


def write_shards(folder: Path, out: Path, per_shard: int) -> list[Path]:
    """The files under ``folder`` (in relative-path order, as an image folder lists them),
    packed in that order into uncompressed tar shards of ``per_shard`` members under ``out``
    (with their relative names); returns the shards."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(folder).as_posix().encode())
    return [_write_tar(out / f"shard-{k:05d}.tar", folder, files[i:i + per_shard])
            for k, i in enumerate(range(0, len(files), per_shard))]


def _write_tar(file: Path, root: Path, members: Sequence[Path]) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(file, "w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            tar.add(member, arcname=member.relative_to(root).as_posix())
    return file


def write_truncated_jpeg(file: Path, seed: int = 9) -> None:
    """A JPEG cut to half its bytes: the header reads, the decode fails."""
    write_image(file, (64, 48), "RGB", "JPEG", seed=seed)
    data = file.read_bytes()
    file.write_bytes(data[:len(data) // 2])


def write_with_truncated(root: Path, good: int = 4) -> Path:
    """``good`` JPEGs (good0.jpg ...) and a truncated one (cut.jpg) in ``root``."""
    for k in range(good):
        write_image(root / f"good{k}.jpg", (40, 40), "RGB", "JPEG", seed=k)
    write_truncated_jpeg(root / "cut.jpg")
    return root


def write_video(file: Path, frames: int, size: tuple[int, int] = (48, 32), gop: int = 4, seed: int = 0,
                codec: str = "mpeg4", rate: int = 10) -> np.ndarray:
    """A video of ``frames`` smooth random frames (w, h), a keyframe every ``gop`` frames;
    returns the frames written (frames, h, w, 3) uint8."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, size=(h // 4, w // 4, 3)).astype(np.uint8)
    images = []
    file.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(file), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = gop
        for t in range(frames):
            frame = np.roll(np.kron(base, np.ones((4, 4, 1), np.uint8)), 2 * t, axis=1)  # (h, w, 3)
            images.append(frame)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return np.array(images)
