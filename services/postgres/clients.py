"""Client tools on a running server: pg_dump and pg_restore archives of a database.

Client tools run as the caller (they connect through the server's socket) and get a password
only through a private PGPASSFILE, never through their arguments or a PGPASSWORD variable.
Long work reports its progress through a callback (`Progress`: tables done of total, bytes),
which the edge renders; without one, nothing is counted and the tools run as they would by hand.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.errors import ClusterError
from services.files import partial_path, private_scratch, publish_new, sweep_partials
from services.postgres import binaries, servers

#: How often, in seconds, a dump or restore reports its progress (when asked to).
TICK = 0.25
#: The last line of a complete plain-SQL dump.
_PLAIN_END = b"-- PostgreSQL database dump complete"


@dataclass(frozen=True)
class Progress:
    """How far a dump or restore is: its tables' data done of the total, and the bytes written so far."""

    action: str
    tables_done: int
    tables_total: int
    bytes_done: int


ProgressCallback = Callable[[Progress], None]


def dump_database(server: servers.Server, dbname: str, user: str, password: str, destination: Path, *,
                  plain: bool = False, snapshot: str | None = None, tables_total: int = 0,
                  progress: ProgressCallback | None = None,
                  before_publish: Callable[[], None] | None = None) -> None:
    """Write a pg_dump archive (custom format, or plain SQL) of dbname to destination, then check it reads back.

    The archive is written under a temporary name (0600 from the start; one a killed run left is
    removed by the next) and linked into place only when complete and verified, so an existing
    file is never overwritten. With snapshot, pg_dump reads the database as that exported
    snapshot saw it. before_publish runs once the archive is verified, before it gets its name.
    """
    suffix = "*.sql" if plain else "*.dump"
    sweep_partials(destination.parent, suffix)  # every archive's: each has a name of its own
    partial = partial_path(destination)
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # pg_dump keeps the mode
        argv = ["pg_dump", f"--format={'plain' if plain else 'custom'}", f"--file={partial}",
                *([f"--snapshot={snapshot}"] if snapshot else []), *(["--verbose"] if progress else []),
                *connection_args(server, user), dbname]
        with passfile_env(server, password) as env:
            _run_watched(server, argv, env, what=f"backup of {dbname}", progress=progress, action="backup",
                         marker="dumping contents of table", total=tables_total, size_of=partial)
            if plain:
                _check_plain(partial, what=f"backup of {dbname} in environment {server.environment!r}")
            else:
                _run_client(server, ["pg_restore", "--list", str(partial)], env, what=f"backup of {dbname}")
        if before_publish is not None:
            before_publish()
        try:
            publish_new(partial, destination)
        except FileExistsError:
            raise ClusterError(f"{destination} already exists; it was not overwritten, run the command again") from None
    finally:
        partial.unlink(missing_ok=True)


def archive_table(server: servers.Server, archive: Path, table: str) -> str:
    """Return the data of one table in a pg_dump archive, as the COPY text pg_restore prints."""
    return _run_client(server, ["pg_restore", "--data-only", f"--table={table}", "--file=-", str(archive)],
                       binaries.child_env(), what=f"reading {archive.name}")


def archive_tables(server: servers.Server, archive: Path) -> list[str]:
    """Return the tables whose data a pg_dump archive holds, as schema.table (from its table of contents)."""
    listing = _run_client(server, ["pg_restore", "--list", str(archive)], binaries.child_env(),
                          what=f"reading {archive.name}")
    tables = []
    for line in listing.splitlines():
        # "217; 0 16390 TABLE DATA public alpha_users piper_owner"
        head, _, rest = line.partition(" TABLE DATA ")
        if rest and not line.startswith(";") and ";" in head:
            parts = rest.split()
            if len(parts) >= 2:
                tables.append(f"{parts[0]}.{parts[1]}")
    return tables


def archive_row_counts(server: servers.Server, archive: Path) -> dict[str, int]:
    """Return the rows of each table in a pg_dump archive, counted in its data (for archives with no record)."""
    counts: dict[str, int] = {}
    command = [str(server.bin_dir / "pg_restore"), "--data-only", "--file=-", str(archive)]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=binaries.child_env()) as reader:
        table = None
        assert reader.stdout is not None
        for line in reader.stdout:
            if table is None:
                if line.startswith(b"COPY "):
                    table = line.split()[1].decode("utf-8", "replace").replace('"', "")
                    counts[table] = 0
            elif line == b"\\.\n":
                table = None
            else:
                counts[table] += 1
        errors = reader.stderr.read().decode("utf-8", "replace") if reader.stderr else ""
    if reader.returncode != 0:
        raise ClusterError(f"reading {archive.name} in environment {server.environment!r} failed: "
                           f"{_failure(errors.splitlines(), reader.returncode)}")
    return counts


def restore_database(server: servers.Server, dbname: str, user: str, password: str, archive: Path, *,
                     then: list[str] = (), tables_total: int = 0, progress: ProgressCallback | None = None) -> None:
    """Restore a pg_dump archive over dbname, and run the statements `then`, in one transaction.

    pg_restore writes the archive as SQL into a pipe and the server's psql runs it inside one
    BEGIN. The statements that must follow it (a new stamp, the application role's limits) and the
    COMMIT reach psql through a second pipe that only this process holds, written once pg_restore
    has ended well and every byte of its SQL has passed: if pg_restore fails part-way, or this
    process is killed, psql reaches the end of its input with the transaction open, and the server
    rolls it back. A restore is never committed half-done, nor without what must follow it.
    With progress, the SQL passes through this process on its way, to be counted.
    """
    read_restore, write_restore = os.pipe()
    read_then, write_then = os.pipe()
    counted = {"tables": 0, "bytes": 0, "pumped": 1}
    pump_from = None
    restore_stdout = write_restore
    if progress is not None:  # pg_restore -> this process (counting) -> psql
        pump_from, restore_stdout = os.pipe()
        counted["pumped"] = 0
    try:
        restore = subprocess.Popen([str(server.bin_dir / "pg_restore"), "--clean", "--if-exists", "--no-owner",
                                    f"--role={user}", *(["--verbose"] if progress else []), "--file=-",
                                    str(archive)], stdin=subprocess.DEVNULL, stdout=restore_stdout,
                                   stderr=subprocess.PIPE, env=binaries.child_env())
    except BaseException:
        for fd in (read_then, write_then, read_restore, *((pump_from, write_restore) if pump_from is not None else ())):
            os.close(fd)
        raise
    finally:
        os.close(restore_stdout)
    errors: list[str] = []
    watchers = [_reader(restore.stderr, errors, counted, "processing data for table", "restore", tables_total,
                        progress)]
    if pump_from is not None:
        watchers.append(_pump(pump_from, write_restore, counted, "restore", tables_total, progress))
    psql: subprocess.Popen | None = None
    try:
        with passfile_env(server, password) as env, tempfile.TemporaryFile("w+") as psql_errors:
            argv = ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", *connection_args(server, user),
                    f"--dbname={dbname}", "--command=BEGIN", f"--file=/dev/fd/{read_restore}",
                    f"--file=/dev/fd/{read_then}"]
            psql = subprocess.Popen([str(server.bin_dir / argv[0]), *argv[1:]], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=psql_errors, text=True, env=env,
                                    pass_fds=(read_restore, read_then))
            os.close(read_restore)
            os.close(read_then)
            read_restore = read_then = -1
            restore.wait()
            for watcher in watchers:
                watcher.join()
            whole = restore.returncode == 0 and counted["pumped"] == 1
            handle = os.fdopen(write_then, "w", encoding="utf-8")
            write_then = -1
            try:
                with handle:
                    if whole:  # only now may the transaction end, with what must follow the restore
                        handle.write("".join(f"{statement};\n" for statement in then) + "COMMIT;\n")
            except BrokenPipeError:
                pass  # psql already stopped on an error: it committed nothing, and says why
            psql.wait()
            psql_errors.seek(0)
            psql_stderr = psql_errors.read()
    finally:
        for fd in (read_restore, read_then, write_then):
            if fd != -1:
                os.close(fd)
        if restore.poll() is None:
            restore.kill()
            restore.wait()
        if psql is not None and psql.poll() is None:
            psql.kill()
            psql.wait()
        for watcher in watchers:
            watcher.join()
    if restore.returncode != 0 or counted["pumped"] != 1:
        detail = _failure(errors, restore.returncode)
        raise ClusterError(f"restore of {archive.name} into {dbname} in environment {server.environment!r} failed: "
                           f"{detail}; nothing was changed")
    if psql.returncode != 0 or not whole:
        found = [line for line in psql_stderr.splitlines() if "ERROR" in line or "FATAL" in line]
        detail = _failure(found or psql_stderr.splitlines(), psql.returncode)
        raise ClusterError(f"restore of {archive.name} into {dbname} in environment {server.environment!r} failed: "
                           f"{detail}; nothing was changed")


def connection_args(server: servers.Server, user: str) -> list[str]:
    """Return the arguments that point a client tool at the server's socket as user, never asking for a password."""
    return [f"--host={server.socket_dir}", f"--port={server.port}", f"--username={user}", "--no-password"]


@contextmanager
def passfile_env(server: servers.Server, password: str) -> Iterator[dict[str, str]]:
    """Yield an environment for client tools whose PGPASSFILE names a private file holding the password.

    Client tools get the password this way, never through their arguments or environment. The
    file (0600) lives in the project's postgres_data/ (0700), never in the shared temporary
    directory; it is removed when the block ends, and one a killed run left by the next run.
    """
    folder = server.project_data_dir.parent
    folder.mkdir(mode=0o700, exist_ok=True)
    with private_scratch(folder, "pgpass") as passfile:
        passfile.write_text(f"*:*:*:*:{password.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}\n")
        yield {**binaries.child_env(), "PGPASSFILE": str(passfile)}


def _run_watched(server: servers.Server, argv: list[str], env: dict[str, str], *, what: str,
                 progress: ProgressCallback | None, action: str, marker: str, total: int, size_of: Path) -> None:
    """Run a client tool; with progress, count its tables (from --verbose) and the size of what it writes."""
    command = [str(server.bin_dir / argv[0]), *argv[1:]]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env)
    errors: list[str] = []
    counted = {"tables": 0, "bytes": 0}
    reader = _reader(process.stderr, errors, counted, marker, action, total, None)
    try:
        while True:
            try:
                process.wait(timeout=TICK if progress else None)
                break
            except subprocess.TimeoutExpired:
                assert progress is not None
                counted["bytes"] = _size(size_of)
                progress(Progress(action, counted["tables"], total, counted["bytes"]))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join()
    if progress is not None:
        progress(Progress(action, max(counted["tables"], total), total, _size(size_of)))
    if process.returncode != 0:
        detail = _failure(errors, process.returncode)
        raise ClusterError(f"{what} in environment {server.environment!r} failed: {detail}")


def _reader(stream: IO[bytes], errors: list[str], counted: dict[str, int], marker: str, action: str, total: int,
            progress: ProgressCallback | None) -> threading.Thread:
    """Start a thread that keeps a tool's error lines and counts its --verbose lines naming a table."""
    def read() -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if marker in line:
                counted["tables"] += 1
                if progress is not None:
                    progress(Progress(action, counted["tables"], total, counted["bytes"]))
            else:
                errors.append(line)
        stream.close()
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _pump(source: int, sink: int, counted: dict[str, int], action: str, total: int,
          progress: ProgressCallback) -> threading.Thread:
    """Start a thread that copies a pipe into another, counting its bytes (and reporting them now and then)."""
    def copy() -> None:
        import time

        last = 0.0
        try:
            while chunk := os.read(source, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(sink, view):]
                counted["bytes"] += len(chunk)
                if time.monotonic() - last >= TICK:
                    last = time.monotonic()
                    progress(Progress(action, counted["tables"], total, counted["bytes"]))
            counted["pumped"] = 1  # every byte passed: the restore's SQL reached psql whole
        except BrokenPipeError:
            pass  # psql stopped reading (it failed): its error says why
        finally:
            os.close(source)
            os.close(sink)
    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _check_plain(path: Path, *, what: str) -> None:
    """Check a plain-SQL dump is complete: pg_dump ends it with its `dump complete` comment."""
    with open(path, "rb") as handle:
        handle.seek(max(0, _size(path) - 4096))
        tail = handle.read()
    if _PLAIN_END not in tail:
        raise ClusterError(f"{what} is incomplete (no end-of-dump line); run the command again")


def _run_client(server: servers.Server, argv: list[str], env: dict[str, str], *, what: str) -> str:
    result = subprocess.run([str(server.bin_dir / argv[0]), *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, env=env, check=False)
    if result.returncode != 0:
        detail = _failure(result.stderr.splitlines(), result.returncode)
        raise ClusterError(f"{what} in environment {server.environment!r} failed: {detail}")
    return result.stdout


def _failure(lines: list[str], returncode: int) -> str:
    """Return the last thing a failed client tool said, and the signal that stopped it, if one did."""
    lines = [line for line in lines if "error" in line.lower()] or lines  # past --verbose's chatter
    said = next((line.strip() for line in reversed(lines) if line.strip()), "")
    reason = binaries.exit_reason(returncode)
    return f"{said} ({reason})" if said and returncode < 0 else said or reason
