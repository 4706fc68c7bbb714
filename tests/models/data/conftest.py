"""Fixtures of the data tests."""

from __future__ import annotations

import pytest

from .helpers import write_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Nested PNG and JPEG files with mixed-case suffixes, and files that are not images."""
    return write_folder(tmp_path_factory.mktemp("images"))
