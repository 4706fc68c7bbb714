"""A labelled set of unaligned faces and distractors cut from photos with face boxes.

The bundled held-out faces are LFW's: tightly aligned 25 x 25 crops. A neuron can score well
on them by matching one template at one place. This module builds the other kind of test
set, the one Le et al.'s invariance claim is about: faces at varied offsets and scales in
their own photos, and distractors cut from the same photos where no face is, so that the
two classes share cameras, lighting and compression.

Input: photos and their face boxes in dlib's imglab XML
(``<image file='a.jpg'><box top='90' left='194' width='37' height='37'/></image>``; dlib's
``examples/faces/training.xml`` and ``testing.xml`` are such files, for 9 PASCAL VOC photos
with 43 faces). For every box:

- one positive: a square of side ``box * U(scale)`` centred on the box's centre moved by
  ``U(-shift, shift) * box`` along each axis, moved (not cut) to lie inside the photo;
- ``negatives_per_face`` negatives: squares of the same side at uniformly drawn places of the
  same photo that overlap no face box (each box grown by ``margin`` of its side first).

Every draw comes from one generator seeded by ``seed``, photo by photo in file order, so a
set is reproducible bit for bit. The crops keep their pixels (no resize): ``cots neurons``
centre-crops and resizes every image to the analysed input, as for any folder.

Planning (:func:`plan_crops`) is pure arithmetic on sizes and boxes; only :func:`write_set`
reads and writes images.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..extras import require

__all__ = ["Box", "Photo", "plan_crops", "read_imglab", "write_set"]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: ``top``, ``left``, ``height``, ``width``."""

    top: float
    left: float
    height: float
    width: float

    @property
    def centre(self) -> tuple[float, float]:
        """(row, column) of the box's centre."""
        return self.top + self.height / 2, self.left + self.width / 2

    @property
    def side(self) -> float:
        """The geometric mean of height and width."""
        return float(np.sqrt(self.height * self.width))

    def grown(self, fraction: float) -> "Box":
        """The box grown by ``fraction`` of its side on every edge."""
        pad = fraction * self.side
        return Box(self.top - pad, self.left - pad, self.height + 2 * pad, self.width + 2 * pad)

    def overlaps(self, other: "Box") -> bool:
        """Whether the two boxes share interior area."""
        return (self.top < other.top + other.height and other.top < self.top + self.height
                and self.left < other.left + other.width and other.left < self.left + self.width)


@dataclass(frozen=True)
class Photo:
    """One annotated photo: its path and its face boxes."""

    path: Path
    faces: tuple[Box, ...]


def read_imglab(path: str | Path) -> list[Photo]:
    """The photos and face boxes of a dlib imglab XML file (paths relative to the file).

    Raises
    ------
    ValueError
        When the file is not such XML, or a box lacks one of top/left/width/height.
    """
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise ValueError(f"expected a dlib imglab XML file of face boxes, got {path} ({exc})") from None
    photos = []
    for image in root.iter("image"):
        if "file" not in image.attrib:
            raise ValueError(f"expected <image file='...'> in {path}, got an <image> without a file")
        boxes = []
        for box in image.iter("box"):
            if box.attrib.get("ignore") == "1":
                continue
            try:
                boxes.append(Box(*(float(box.attrib[k]) for k in ("top", "left", "height", "width"))))
            except (KeyError, ValueError):
                raise ValueError(f"expected a box with numeric top, left, width and height in {path}, "
                                 f"got {dict(box.attrib)}") from None
        photos.append(Photo(path.parent / image.attrib["file"], tuple(boxes)))
    if not photos:
        raise ValueError(f"expected <image> entries in {path}, got none")
    return photos


def _inside(row: float, col: float, side: float, height: int, width: int) -> Box:
    """The square of ``side`` centred at (row, col), moved to lie inside the photo."""
    side = min(side, height, width)
    top = float(np.clip(row - side / 2, 0, height - side))
    left = float(np.clip(col - side / 2, 0, width - side))
    return Box(top, left, side, side)


def plan_crops(height: int, width: int, faces: Sequence[Box], rng: np.random.Generator,
               scale: tuple[float, float] = (1.4, 2.0), shift: float = 0.2, negatives_per_face: int = 2,
               margin: float = 0.25, tries: int = 2000) -> tuple[list[Box], list[Box]]:
    """The positive and negative squares of one photo of ``height`` x ``width`` pixels.

    Returns
    -------
    positives, negatives : list of Box
        One positive per face; up to ``negatives_per_face`` negatives per face (fewer when
        ``tries`` random places find no room clear of every grown face box).
    """
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"expected a scale range 0 < low <= high, got {scale}")
    if shift < 0 or margin < 0 or negatives_per_face < 0:
        raise ValueError(f"expected shift, margin and negatives_per_face >= 0, got {shift}, {margin}, "
                         f"{negatives_per_face}")
    positives, negatives = [], []
    keep_out = [face.grown(margin) for face in faces]
    for face in faces:
        side = face.side * rng.uniform(*scale)
        row, col = face.centre
        dy, dx = rng.uniform(-shift, shift, size=2) * face.side
        positives.append(_inside(row + dy, col + dx, side, height, width))
        side = min(side, height, width)
        for _ in range(negatives_per_face):
            for _ in range(tries):
                square = Box(rng.uniform(0, height - side), rng.uniform(0, width - side), side, side)
                if not any(square.overlaps(face) for face in keep_out):
                    negatives.append(square)
                    break
    return positives, negatives


def _crop(image, box: Box):
    """The pixels of ``box`` of a PIL image, corner and sides rounded to whole pixels (a
    square stays square), never past the image's edge."""
    top = min(round(box.top), image.height - max(round(box.height), 1))
    left = min(round(box.left), image.width - max(round(box.width), 1))
    return image.crop((left, top, left + max(round(box.width), 1), top + max(round(box.height), 1)))


def write_set(annotations: Sequence[str | Path], out: str | Path, seed: int = 0,
              scale: tuple[float, float] = (1.4, 2.0), shift: float = 0.2, negatives_per_face: int = 2,
              margin: float = 0.25) -> dict:
    """Cut the labelled set of every photo in ``annotations`` into ``out/positives`` and
    ``out/negatives`` (PNG); write ``out/crops.json`` saying how. Returns that record.

    Raises
    ------
    ValueError
        An annotation file that cannot be read, or a photo it names that cannot be decoded.
    """
    image_module = require("PIL.Image", "cots crops")
    out = Path(out)
    photos = [photo for path in annotations for photo in read_imglab(path)]
    rng = np.random.default_rng(seed)
    folders = {"positives": out / "positives", "negatives": out / "negatives"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    counts = {"positives": 0, "negatives": 0}
    for n, photo in enumerate(photos):
        try:
            with image_module.open(photo.path) as opened:
                image = opened.convert("RGB")
        except OSError as exc:
            raise ValueError(f"expected a readable photo, got {photo.path} ({exc})") from None
        crops = plan_crops(image.height, image.width, photo.faces, rng, scale, shift, negatives_per_face, margin)
        for kind, boxes in zip(("positives", "negatives"), crops):
            for i, box in enumerate(boxes):
                _crop(image, box).save(folders[kind] / f"{n:04d}_{photo.path.stem}_{i:02d}.png")
            counts[kind] += len(boxes)
    record = {"annotations": [str(a) for a in annotations], "photos": len(photos), "seed": seed,
              "scale": list(scale), "shift": shift, "negatives_per_face": negatives_per_face, "margin": margin,
              **counts}
    (out / "crops.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
