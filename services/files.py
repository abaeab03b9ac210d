"""Atomic file writes: a file is either its old content or its new content, never half of each."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Write data to path through a temporary file in the same directory, fsync it, then rename.

    The temporary file is created with ``mode`` from the start, so a secret is never readable by
    others even for an instant.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
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
