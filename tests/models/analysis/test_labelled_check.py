"""`cots neurons` refuses labelled sets too small for the two-half protocol and warns, with the
interval width, when the held-out score would be imprecise."""

from __future__ import annotations

import pytest

from models.analysis.run import _check_labelled


def test_too_few_of_a_class_is_refused():
    with pytest.raises(ValueError, match="expected at least 2 positives and 2 negatives, got 1 and 40"):
        _check_labelled(1, 40)


def test_a_small_set_is_warned_about_with_its_interval():
    warning = _check_labelled(10, 20)
    assert warning.startswith("cots neurons: warning: only 30 labelled images (10 positives, 20 negatives)")
    assert "95% interval of 56% to 86%" in warning and "+-15 points" in warning


def test_the_bundled_set_is_large_enough():
    assert _check_labelled(30, 60) is None
