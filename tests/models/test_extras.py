"""Optional packages: each missing one is named with the extra that installs it, once, and a
training run without the plotting packages still trains (without its figures)."""

from __future__ import annotations

import importlib
import logging

import pytest

from distarray import comm
from models import extras
from models.config import parse_config
from models.extras import MissingExtra, require
from models.training.trainer import Trainer


@pytest.fixture
def without(monkeypatch):
    """``without("matplotlib")``: make importing that package (and its submodules) fail."""
    real = importlib.import_module

    def block(*names):
        def fake(name, *args, **kwargs):
            if name.split(".")[0] in names:
                raise ImportError(name)
            return real(name, *args, **kwargs)
        monkeypatch.setattr(extras.importlib, "import_module", fake)
    return block


def test_the_message_names_the_package_and_the_extra(without):
    without("skimage")
    with pytest.raises(MissingExtra, match=r"^the demo needs scikit-image, which is not installed: "
                                           r"pip install 'cots-hpc\[bundled\]' \(or 'cots-hpc\[all\]'\)$"):
        require("skimage.data", "the demo")
    assert issubclass(MissingExtra, ValueError)  # the CLI's one-line usage error on every rank


def test_bundled_data_without_scikit_image(without):
    from models.data.readers import load_lfw

    without("skimage")
    with pytest.raises(MissingExtra, match=r'data.source = "bundled" .* needs scikit-image'):
        load_lfw()


def test_training_without_matplotlib_trains_and_says_so_once(without, tmp_path):
    without("matplotlib")
    seen: list[str] = []
    catch = logging.Handler(logging.INFO)
    catch.emit = lambda record: seen.append(record.getMessage())
    progress = logging.getLogger("cots.progress")
    progress.addHandler(catch)
    level, progress.level = progress.level, logging.INFO  # whatever the cots logger's level is now
    cfg = parse_config({"model": {"input": [12, 11, 1], "stages": [{"k": 4, "maps": 2, "pool": 2, "lcn": 3}]},
                        "train": {"steps": 4, "batch": 4, "checkpoint_every": 2}})
    try:
        Trainer(cfg, tmp_path, world=comm.self_comm()).run()
    finally:
        progress.removeHandler(catch)
        progress.setLevel(level)
    assert (tmp_path / "metrics.jsonl").is_file() and not (tmp_path / "loss.png").exists()
    said = [m for m in seen if "no loss.png or curves.png" in m]
    assert len(said) == 1 and "pip install 'cots-hpc[analysis]'" in said[0]
