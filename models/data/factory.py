"""The data source a config's ``[data]`` table names (:func:`make_dataset`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .folder import ImageFolder
from .readers import read_cifar10, read_stl10
from .shards import TarShards
from .sources import ArrayImages, BundledImages, ImageSource

__all__ = ["SOURCES", "make_dataset"]

SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # source: (required keys, optional keys)
    "bundled": ((), ("face_share", "holdout", "train_faces")),
    "folder": (("path",), ("crop", "on_error")),
    "video": (("path",), ("crop", "on_error")),
    "shards": (("path",), ("crop", "on_error")),
    "cifar10": (("path",), ("split",)),
    "stl10": (("path",), ("split",)),
}


def check_spec(spec: dict[str, Any]) -> str:
    """The source ``spec`` names, after checking its keys (ValueError naming what is wrong)."""
    source = spec.get("source")
    if source not in SOURCES:
        raise ValueError(f"expected data.source one of {', '.join(SOURCES)}, got {source!r}")
    required, optional = SOURCES[source]
    accepted = f"accepted: {', '.join(required + optional)}"
    missing = [key for key in required if key not in spec]
    unknown = sorted(set(spec) - {"source", *required, *optional})
    if missing or unknown:
        problem = f"missing data.{missing[0]}" if missing else f"unknown data.{', data.'.join(unknown)}"
        raise ValueError(f"{problem} for data.source {source!r} ({accepted})")
    return source


def make_dataset(spec: dict[str, Any], size: Sequence[int], channels: int, seed: int,
                 listing: dict[str, Any] | None = None, cache: str | Path | None = None) -> ImageSource:
    """Build the source that the ``data`` table of a config names.

    Parameters
    ----------
    spec : dict
        ``source`` and its keys: bundled: ``face_share`` (0.1), ``holdout`` (30), ``train_faces``
        (all that holdout leaves); folder, video and shards (a folder of tar files): ``path``
        (required), ``crop`` ("random"), ``on_error`` ("raise" or "skip");
        cifar10 and stl10: ``path`` (required, the extracted binary directory), ``split``
        ("train").
    size : (H, W)
        Sample rows and columns (CIFAR-10 and STL-10 images are resized to it).
    channels : {1, 3}
        Grey or RGB.
    seed : int
        With the step and the sample's index, fixes every sample.
    listing : dict, optional
        A folder, video or shards source's listing (its
        :meth:`~models.data.folder.StreamingSource.listing`), when the caller already has it:
        nothing is listed here.
    cache : path, optional
        Where a folder, video or shards source keeps its listing between runs.

    Returns
    -------
    ImageSource
    """
    source = check_spec(spec)
    options = {key: value for key, value in spec.items() if key != "source"}
    if source == "bundled":
        return BundledImages(size, channels, seed=seed, **options)
    if source == "folder":
        return ImageFolder(options.pop("path"), size, channels, seed, cache=cache, **(listing or {}), **options)
    if source == "video":
        from .video import VideoFrames  # PyAV is an extra: imported only when asked for
        return VideoFrames(options.pop("path"), size, channels, seed, cache=cache, **(listing or {}), **options)
    if source == "shards":
        return TarShards(options.pop("path"), size, channels, seed, cache=cache, **(listing or {}), **options)
    split = options.get("split", "train")
    images, labels = (read_cifar10 if source == "cifar10" else read_stl10)(options["path"], split)
    return ArrayImages(images, seed, labels, name=f"{source} {split}", size=size, channels=channels)
