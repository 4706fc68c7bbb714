"""cots crops: unaligned faces and distractors cut from photos with face boxes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.analysis.box_crops import Box, plan_crops, read_imglab, write_set
from tests.models.training.cli_env import BIN, ENV, ROOT

FACES = [Box(40, 50, 30, 30), Box(100, 200, 44, 44)]


def _photo(folder: Path, name: str = "a.png", size: tuple[int, int] = (180, 300)) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / name)
    return folder / name


def _xml(folder: Path, photos: dict[str, list[Box]]) -> Path:
    images = "".join(
        f"<image file='{name}'>" + "".join(f"<box top='{b.top:g}' left='{b.left:g}' width='{b.width:g}' "
                                           f"height='{b.height:g}'/>" for b in boxes) + "</image>"
        for name, boxes in photos.items())
    path = folder / "faces.xml"
    path.write_text(f"<?xml version='1.0'?><dataset><images>{images}</images></dataset>")
    return path


def test_read_imglab(tmp_path):
    path = _xml(tmp_path, {"a.png": FACES, "b.png": []})
    photos = read_imglab(path)
    assert [p.path for p in photos] == [tmp_path / "a.png", tmp_path / "b.png"]
    assert photos[0].faces == tuple(FACES) and photos[1].faces == ()


def test_read_imglab_skips_ignored_boxes(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text("<dataset><images><image file='a.png'><box top='1' left='2' width='3' height='4'/>"
                    "<box top='1' left='2' width='3' height='4' ignore='1'/></image></images></dataset>")
    assert read_imglab(path)[0].faces == (Box(1, 2, 4, 3),)


@pytest.mark.parametrize("text, message", [
    ("not xml", "expected a dlib imglab XML file"),
    ("<dataset><images></images></dataset>", "expected <image> entries"),
    ("<dataset><image/></dataset>", "without a file"),
    ("<dataset><image file='a'><box top='x' left='1' width='1' height='1'/></image></dataset>", "numeric top"),
])
def test_read_imglab_errors(tmp_path, text, message):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_imglab(path)


def test_plan_crops_positives_hold_their_face_negatives_hold_none():
    positives, negatives = plan_crops(180, 300, FACES, np.random.default_rng(1), negatives_per_face=3)
    assert len(positives) == 2 and len(negatives) == 6
    for face, square in zip(FACES, positives):
        assert square.height == square.width and 1.4 * face.side <= square.side <= 2.0 * face.side
        row, col = face.centre  # the face's centre lies inside its crop, though not at its centre
        assert square.top <= row <= square.top + square.height and square.left <= col <= square.left + square.width
    for square in positives + negatives:
        assert square.top >= 0 and square.left >= 0 and square.top + square.height <= 180
        assert square.left + square.width <= 300
    for square in negatives:
        assert not any(square.overlaps(face.grown(0.25)) for face in FACES)
    sides = sorted({round(s.side, 9) for s in negatives})
    assert sides == sorted(round(s.side, 9) for s in positives)  # the distractors take the faces' sizes


def test_plan_crops_is_unaligned_and_reproducible():
    one = plan_crops(180, 300, FACES, np.random.default_rng(5))
    assert one == plan_crops(180, 300, FACES, np.random.default_rng(5))
    offsets = [(s.centre[0] - f.centre[0], s.centre[1] - f.centre[1]) for f, s in zip(FACES, one[0])]
    assert all(abs(dy) > 0 or abs(dx) > 0 for dy, dx in offsets)


def test_plan_crops_gives_up_when_no_room():
    everywhere = [Box(0, 0, 100, 100)]
    positives, negatives = plan_crops(100, 100, everywhere, np.random.default_rng(0), tries=50)
    assert len(positives) == 1 and negatives == []
    assert positives[0].side <= 100  # a crop larger than the photo is shrunk to it


@pytest.mark.parametrize("kwargs", [{"scale": (2.0, 1.0)}, {"shift": -1}, {"negatives_per_face": -1}])
def test_plan_crops_errors(kwargs):
    with pytest.raises(ValueError, match="expected"):
        plan_crops(100, 100, FACES, np.random.default_rng(0), **kwargs)


def test_write_set(tmp_path):
    _photo(tmp_path)
    record = write_set([_xml(tmp_path, {"a.png": FACES})], tmp_path / "set", seed=3)
    positives = sorted((tmp_path / "set" / "positives").iterdir())
    negatives = sorted((tmp_path / "set" / "negatives").iterdir())
    assert record["positives"] == len(positives) == 2 and record["negatives"] == len(negatives) == 4
    assert json.loads((tmp_path / "set" / "crops.json").read_text())["seed"] == 3
    crop = np.asarray(Image.open(positives[0]))
    assert crop.shape[0] == crop.shape[1] and crop.shape[2] == 3
    again = write_set([tmp_path / "faces.xml"], tmp_path / "again", seed=3)
    assert again["positives"] == 2
    for a, b in zip(positives, sorted((tmp_path / "again" / "positives").iterdir())):
        assert a.read_bytes() == b.read_bytes()


def test_write_set_names_an_unreadable_photo(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="expected a readable photo, got .*a.png"):
        write_set([_xml(tmp_path, {"a.png": FACES})], tmp_path / "set")


def test_cli(tmp_path):
    _photo(tmp_path)
    xml = _xml(tmp_path, {"a.png": FACES})
    done = subprocess.run([str(BIN / "cots"), "crops", str(xml), "--out", str(tmp_path / "set"), "--seed", "1"],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 faces and 4 distractors from 1 photos" in done.stdout
    bad = subprocess.run([str(BIN / "cots"), "crops", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "cots crops: error: expected a dlib imglab XML file of face boxes, got" in bad.stderr
