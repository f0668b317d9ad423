"""Result files are replaced whole or not at all."""

from __future__ import annotations

import os

import pytest

from tuner.atomic import write_text


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_text(path, "old")
    write_text(path, "new")
    assert path.read_text() == "new" and os.listdir(path.parent) == ["result.json"]


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_text(path, "recorded")

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_text(path, "half")
    assert path.read_text() == "recorded" and os.listdir(tmp_path) == ["result.json"]
