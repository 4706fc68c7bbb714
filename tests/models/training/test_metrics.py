"""A run's metrics file (writing, resuming, a crash's truncated last line), the loss plot and
the progress bar."""

from __future__ import annotations

import json

import pytest

from models.training.metrics import MetricsLog, Progress, plot_loss, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record(step: int, stages=("0",)) -> dict:
    """A record as the trainer writes it."""
    terms = {s: {"loss": 1.0 / (step + 1) + int(s), "reconstruction": 0.8 / (step + 1), "sparsity": 0.2 + int(s)}
             for s in stages}
    return {"step": step, "loss": sum(t["loss"] for t in terms.values()), "samples_per_s": 100.0 + step,
            "stages": terms}


def write_log(path, records, start: int = 0) -> None:
    log = MetricsLog(path, start=start)
    for r in records:
        log.write(r)
    log.close()


# --- MetricsLog and read_metrics -------------------------------------------------------------

def test_writes_one_json_object_per_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [record(step) for step in range(3)] + [{"step": 3, "note": "é", "nested": [1, {"a": None}]}]
    write_log(path, records)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and path.read_text().endswith("\n")
    assert [json.loads(line) for line in lines] == records
    assert read_metrics(path) == records


def test_each_write_is_flushed(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    log.write(record(0))
    assert read_metrics(path) == [record(0)]  # readable before close
    log.close()


def test_fresh_log_creates_the_file_and_no_tmp_is_left(tmp_path):
    path = tmp_path / "metrics.jsonl"
    MetricsLog(path, start=5).close()
    assert path.read_text() == ""
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_start_zero_replaces_an_old_run(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, [record(step) for step in range(4)])
    write_log(path, [record(0, ("1",))])
    assert read_metrics(path) == [record(0, ("1",))]


@pytest.mark.parametrize("start", [0, 1, 3, 5, 100])
def test_resume_keeps_steps_before_start_and_appends(tmp_path, start):
    path = tmp_path / "metrics.jsonl"
    first = [record(step) for step in range(5)]
    write_log(path, first)
    again = [record(step, ("0", "1")) for step in range(start, start + 3)]
    write_log(path, again, start=start)
    assert read_metrics(path) == first[:start] + again
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_resume_after_a_crash_mid_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, [record(step) for step in range(3)])
    with path.open("a") as f:
        f.write(json.dumps(record(3))[:17])  # the crash: no newline, half an object
    assert read_metrics(path) == [record(step) for step in range(3)]
    write_log(path, [record(3), record(4)], start=3)
    assert read_metrics(path) == [record(step) for step in range(5)]
    assert len(path.read_text().splitlines()) == 5


def test_read_metrics_skips_a_truncated_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    full = json.dumps(record(1))
    for cut in (1, len(full) // 2, len(full) - 1):
        path.write_text(json.dumps(record(0)) + "\n" + full[:cut])
        assert read_metrics(path) == [record(0)], cut


def test_read_metrics_empty_file_and_blank_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("")
    assert read_metrics(path) == []
    path.write_text(json.dumps({"step": 0}) + "\n\n" + json.dumps({"step": 1}) + "\n")
    assert read_metrics(path) == [{"step": 0}, {"step": 1}]


def test_read_metrics_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "none.jsonl")


# --- plot_loss -------------------------------------------------------------------------------

def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


@pytest.mark.parametrize("records", [
    [record(step) for step in range(10)],
    [record(step) for step in range(5)] + [record(step, ("1",)) for step in range(5, 10)],  # greedy
    [record(step, ("0", "1")) for step in range(10)],  # joint
    [],
], ids=["one-stage", "greedy-two-stages", "joint-two-stages", "empty"])
def test_plot_loss_writes_a_png(tmp_path, records):
    png = tmp_path / "loss.png"
    png.write_bytes(b"old")  # overwritten
    out = plot_loss(iter(records), str(png), title="t")  # any iterable; a str path
    assert out == png
    assert_png(png)


def test_plot_loss_draws_each_term_of_each_stage_against_step(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = {}
    plot = matplotlib.axes.Axes.plot

    def spy(ax, xs, ys, *args, label=None, **kwargs):
        drawn[label] = (list(xs), list(ys))
        return plot(ax, xs, ys, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    records = [record(step) for step in range(3)] + [{"step": 3, "loss": 1.0}]  # a record without stages
    records += [record(step, ("1",)) for step in range(4, 6)]
    plot_loss(records, tmp_path / "loss.png")
    assert sorted(drawn) == sorted(f"stage {s} {t}" for s in "01" for t in ("loss", "reconstruction", "sparsity"))
    assert drawn["stage 0 loss"] == ([0, 1, 2], [r["stages"]["0"]["loss"] for r in records[:3]])
    assert drawn["stage 1 sparsity"] == ([4, 5], [1.2, 1.2])


# --- Progress --------------------------------------------------------------------------------

def test_progress_disabled_does_nothing(capsys):
    bar = Progress(10, 0, enabled=False)
    bar.update(0.5, 100.0, "0")
    bar.close()
    assert capsys.readouterr() == ("", "")


def test_progress_enabled_shows_the_step_figures(capsys):
    bar = Progress(10, 2, enabled=True, desc="demo")
    for step in range(3):
        bar.update(0.123456 / (step + 1), 512.31, "0,1")
    bar.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert "demo" in err and "5/10" in err
    assert "stage 0,1 loss 0.04115 512.3 samples/s" in err


def test_curves_from_records_old_and_new(tmp_path):
    """curves.png draws records with norms and held-out terms, and old records without them."""
    from models.training.metrics import plot_curves, refresh_plots

    old = {"step": 0, "lr": 0.1, "loss": 5.0, "stages": {"0": {"loss": 5.0, "reconstruction": 4.0, "sparsity": 1.0}},
           "samples_per_s": 10.0, "seconds": {"step": 1.0, "data": 0.1, "comm": 0.2, "compute": 0.7}}
    new = json.loads(json.dumps(old)) | {"step": 1, "time": 1.8e9, "norms": {"0": {"weight": 3.0, "grad": 0.5}},
                                         "heldout": {"0": {"loss": 6.0, "reconstruction": 5.0, "sparsity": 1.0}}}
    assert plot_curves([old, new], tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "metrics.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    refresh_plots(tmp_path)
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "curves.png").is_file()
    assert not list(tmp_path.glob(".*.tmp.png"))


def test_tensorboard_without_its_package_is_one_clear_error(monkeypatch):
    import builtins

    from models.training.metrics import TensorBoardLog

    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "tensorboardX":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ValueError, match=r"pip install 'cots-hpc\[tensorboard\]'"):
        TensorBoardLog.check()
