"""Atomic file writes: a file is either its old content or its new content, never half of each."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.errors import UsageError


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

    When the block ends normally the file is flushed to disk, given its mode and renamed to path
    (replacing what was there), and the rename is flushed too; when it raises, the temporary file
    is removed and path is untouched. Until then it is 0600, and one that a killed run left
    behind is removed by the next write beside it (`sweep_partials`).
    """
    path = Path(path)
    sweep_partials(path.parent, path.name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=path.parent)
    try:
        os.close(fd)  # mkstemp made it 0600: a partial file is private until it is complete
        yield Path(tmp_name)
        fd = os.open(tmp_name, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.fchmod(fd, mode)
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
    # New files have names of their own (a time, a user): what a killed writer left has another name.
    sweep_partials(path.parent, "*")
    partial = partial_path(path)
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


@contextmanager
def private_scratch(folder: Path, name: str) -> Iterator[Path]:
    """Yield a new, empty 0600 file `.NAME.PID.RAND.partial` in folder, removed when the block ends.

    For what holds a secret or personal data for a moment (a client's password file, a document on
    its way to standard output): never in the shared temporary directory, and one a killed process
    left is removed by the next call (sweep_partials).
    """
    sweep_partials(folder, name)
    scratch = Path(folder) / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.partial"
    os.close(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)


def partial_path(path: Path) -> Path:
    """Return the name under which this process writes path until it is complete (`.NAME.PID.partial`)."""
    return Path(path).with_name(f".{Path(path).name}.{os.getpid()}.partial")


def sweep_partials(directory: Path, name: str) -> None:
    """Remove the partial files of name (a glob, e.g. "*.dump") in directory that killed processes left."""
    for candidate in orphaned_partials(directory, name):
        candidate.unlink(missing_ok=True)


def orphaned_partials(directory: Path, name: str = "*") -> list[Path]:
    """Return the partial files of name (a glob) in directory whose writer is gone, sorted.

    A partial file is `.NAME.PID.partial` or `.NAME.PID.RANDOM.partial`: it carries the PID of
    the process writing it, is left alone while that process lives, and is removed once it is
    gone (kill -9 runs no clean-up of its own).
    """
    try:
        candidates = sorted(Path(directory).glob(f".{name}.*.partial"))
    except OSError:
        return []
    return [path for path in candidates
            if (parsed := _PARTIAL.fullmatch(path.name)) and not process_alive(int(parsed["pid"]))]


_PARTIAL = re.compile(r"\.(?P<name>.+?)\.(?P<pid>\d+)(?:\.[^.]+)?\.partial")


def process_alive(pid: int) -> bool:
    """Return True when a process with this PID exists (another account's included)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no PID at all (more digits than a pid_t holds)
        return False
    except PermissionError:
        return True  # another account's process
    return True


def private_dir(base: Path, *parts: str) -> Path:
    """Return base/parts..., each directory created (or closed) to mode 0700: for secrets and personal data."""
    directory = Path(base)
    for part in parts:
        directory = directory / part
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    return directory


def read_regular_file(path: Path, max_bytes: int, *, what: str = "file", allow_link: bool = True) -> bytes:
    """Return the bytes of a regular file of at most max_bytes; raise UsageError naming the problem.

    Only a regular file is read: a FIFO would hang the command and a device (/dev/zero) never end.
    With allow_link=False a symbolic link is refused too. The read is bounded, and the file is
    opened without blocking and checked again once open (it cannot be swapped for a FIFO meanwhile).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if allow_link else getattr(os, "O_NOFOLLOW", 0)))
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; check the path") from None
    except OSError as exc:
        if not allow_link and os.path.islink(path):
            raise UsageError(f"{path} is a symbolic link; the {what} must be a file of its own") from None
        raise UsageError(f"{path} cannot be read ({exc.strerror}); check the path and its permissions") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{path} is a directory; name the {what} itself")
        raise UsageError(f"{path} is not a regular file (a FIFO, socket or device); pass the {what} itself")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UsageError(f"{path} is larger than a {what} may be ({max_bytes} bytes); check that it is the right file")
    return data
