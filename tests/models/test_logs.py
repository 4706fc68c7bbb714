"""models.logs: rank 0 prints at its level, the other ranks warnings only, with a rank prefix
when there are several; per-step lines reach the console only at debug; the file keeps info."""

from __future__ import annotations

import logging

import pytest

from models.logs import PROGRESS, add_file, configure, logger


@pytest.fixture(autouse=True)
def restore():
    yield
    log = logger()
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.propagate = True
    log.setLevel(logging.NOTSET)


def emit() -> None:
    logger("train").info("summary")
    logging.getLogger(PROGRESS).info("step 3")
    logger("train").warning("careful")


def test_rank_zero_prints_info_to_stdout_and_warnings_to_stderr(capsys):
    configure("info", 0, 2)
    emit()
    out, err = capsys.readouterr()
    assert out == "[rank 0/2] summary\n" and err == "[rank 0/2] careful\n"


def test_other_ranks_print_warnings_only_and_one_rank_has_no_prefix(capsys):
    configure("info", 3, 4)
    emit()
    assert capsys.readouterr() == ("", "[rank 3/4] careful\n")
    configure("debug", 0, 1)
    emit()
    assert capsys.readouterr() == ("summary\nstep 3\n", "careful\n")


def test_the_file_keeps_info_with_timestamps_at_a_quieter_console(tmp_path, capsys):
    configure("warning", 0, 1)
    add_file(tmp_path / "train.log", "warning")
    emit()
    assert capsys.readouterr() == ("", "careful\n")
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["INFO cots.train: summary", "INFO cots.progress: step 3",
                                                         "WARNING cots.train: careful"]


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="expected a log level in"):
        configure("loud")
