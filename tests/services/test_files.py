"""Atomic writes: complete or absent, private from the start, and new files never replace old ones."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.errors import UsageError
from services.files import atomic_file, read_regular_file, sweep_partials, write_atomic, write_new


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


def test_a_partial_file_is_private_until_complete_and_a_killed_writers_is_swept(tmp_path: Path) -> None:
    import os

    target = tmp_path / "export.json"
    seen = []
    with atomic_file(target, mode=0o644) as partial:
        seen.append(stat.S_IMODE(partial.stat().st_mode))
        partial.write_text("{}")
    assert seen == [0o600] and stat.S_IMODE(target.stat().st_mode) == 0o644
    # What kill -9 leaves (a writer that is gone) is removed by the next write; a live writer's stays.
    dead = tmp_path / ".export.json.999999999.partial"
    alive = tmp_path / f".export.json.{os.getppid()}.partial"
    dead.write_text("personal data")
    alive.write_text("being written")
    write_atomic(target, "{}", mode=0o600)
    assert not dead.exists() and alive.exists()
    sweep_partials(tmp_path, "other")
    assert alive.exists()
    # A name whose "PID" has more digits than any process ID can hold names no live writer: it goes too.
    overlong = tmp_path / ".export.json.99999999999999999999.partial"
    overlong.write_text("personal data")
    write_atomic(target, "{}", mode=0o600)
    assert not overlong.exists() and alive.exists()


def test_only_a_bounded_regular_file_is_read(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    link = tmp_path / "link"
    link.symlink_to(big)
    for path, message in ((fifo, "is not a regular file"), (tmp_path, "is a directory"), (big, "is larger than"),
                          (tmp_path / "missing", "does not exist"), (Path("/dev/zero"), "is not a regular file")):
        with pytest.raises(UsageError, match=message):
            read_regular_file(path, 100)
    assert read_regular_file(link, 200) == b"x" * 101
    with pytest.raises(UsageError, match="is a symbolic link"):
        read_regular_file(link, 200, allow_link=False)
