"""Atomic file writes: a file is either its old content or its new content, never half of each."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Write data to path through a temporary file in the same directory, fsync it, then rename.

    The temporary file is created with ``mode`` from the start, so a secret is never readable by
    others even for an instant.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, mode=mode) as partial, open(partial, "wb") as handle:
        handle.write(raw)


@contextmanager
def atomic_file(path: Path, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield an empty temporary file beside path, created with mode; fill it inside the block.

    When the block ends normally the file is flushed to disk and renamed to path (replacing what
    was there), and the rename is flushed too; when it raises, the temporary file is removed and
    path is untouched.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        os.close(fd)
        yield Path(tmp_name)
        fd = os.open(tmp_name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(path.parent)


def write_new(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """Write a new file atomically, refusing to replace one that exists (FileExistsError).

    For backups and exports: complete or absent, and never over an earlier one.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.new-{os.getpid()}")
    write_atomic(partial, data, mode=mode)
    publish_new(partial, path)


def publish_new(partial: Path, path: Path) -> None:
    """Give a finished file its final name, only if that name is free (FileExistsError otherwise).

    The partial name is removed either way, and the new entry is flushed to disk.
    """
    try:
        os.link(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
    fsync_directory(Path(path).parent)


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry to disk: a rename or a new link is durable only after this."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
