"""Atomic writes: complete or absent, private from the start, and new files never replace old ones."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.files import write_atomic, write_new


def test_write_atomic_replaces_whole_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "secret.env"
    write_atomic(target, "A=1\n", mode=0o600)
    write_atomic(target, "A=2\n", mode=0o600)
    assert target.read_text() == "A=2\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.env"]  # no temporary file left


def test_write_new_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "backup.json"
    write_new(target, b"first")
    with pytest.raises(FileExistsError):
        write_new(target, b"second")
    assert target.read_bytes() == b"first" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["backup.json"]
