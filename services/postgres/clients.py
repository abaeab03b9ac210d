"""Client tools on a running server: pg_dump and pg_restore archives of a database.

Client tools run as the caller (they connect through the server's socket) and get a password
only through a private PGPASSFILE, never through their arguments or a PGPASSWORD variable.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.errors import ClusterError
from services.files import partial_path, private_scratch, publish_new, sweep_partials
from services.postgres import binaries, servers


def dump_database(server: servers.Server, dbname: str, user: str, password: str, destination: Path) -> None:
    """Write a pg_dump custom-format archive of dbname to destination, then check it reads back.

    The archive is written under a temporary name (0600 from the start; one a killed run left is
    removed by the next) and linked into place only when complete and verified, so an existing
    file is never overwritten.
    """
    sweep_partials(destination.parent, "*.dump")  # every archive's: each has a name of its own
    partial = partial_path(destination)
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # pg_dump keeps the mode
        with passfile_env(server, password) as env:
            for argv in (["pg_dump", "--format=custom", f"--file={partial}", *connection_args(server, user), dbname],
                         ["pg_restore", "--list", str(partial)]):
                _run_client(server, argv, env, what=f"backup of {dbname}")
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


def restore_database(server: servers.Server, dbname: str, user: str, password: str, archive: Path, *,
                     then: list[str] = ()) -> None:
    """Restore a pg_dump archive over dbname, and run the statements `then`, in one transaction.

    pg_restore writes the archive as SQL into a pipe, the server's psql runs it and then the
    statements (a new stamp, the application role's limits) between one BEGIN and COMMIT: on any
    error nothing is changed, and a restore is never committed without what must follow it.
    """
    read_restore, write_restore = os.pipe()
    read_then, write_then = os.pipe()
    with os.fdopen(write_then, "w", encoding="utf-8") as handle:  # a few statements: the pipe holds them
        handle.write("".join(f"{statement};\n" for statement in then))
    try:
        restore = subprocess.Popen([str(server.bin_dir / "pg_restore"), "--clean", "--if-exists", "--no-owner",
                                    f"--role={user}", "--file=-", str(archive)], stdin=subprocess.DEVNULL,
                                   stdout=write_restore, stderr=subprocess.PIPE, env=binaries.child_env())
    except BaseException:
        os.close(read_then)
        raise
    finally:
        os.close(write_restore)
    try:
        with passfile_env(server, password) as env:
            argv = ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction",
                    *connection_args(server, user), f"--dbname={dbname}",
                    f"--file=/dev/fd/{read_restore}", f"--file=/dev/fd/{read_then}"]
            psql = subprocess.run([str(server.bin_dir / argv[0]), *argv[1:]], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, env=env, check=False,
                                  pass_fds=(read_restore, read_then))
    finally:
        os.close(read_restore)
        os.close(read_then)
        _, restore_errors = restore.communicate()
    if restore.returncode != 0:
        detail = _failure(restore_errors.decode("utf-8", "replace").splitlines(), restore.returncode)
        raise ClusterError(f"restore of {archive.name} into {dbname} in environment {server.environment!r} failed: "
                           f"{detail}; nothing was changed")
    if psql.returncode != 0:
        errors = [line for line in psql.stderr.splitlines() if "ERROR" in line or "FATAL" in line]
        detail = _failure(errors or psql.stderr.splitlines(), psql.returncode)
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


def _run_client(server: servers.Server, argv: list[str], env: dict[str, str], *, what: str) -> str:
    result = subprocess.run([str(server.bin_dir / argv[0]), *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, env=env, check=False)
    if result.returncode != 0:
        detail = _failure(result.stderr.splitlines(), result.returncode)
        raise ClusterError(f"{what} in environment {server.environment!r} failed: {detail}")
    return result.stdout


def _failure(lines: list[str], returncode: int) -> str:
    """Return the last thing a failed client tool said, and the signal that stopped it, if one did."""
    said = next((line.strip() for line in reversed(lines) if line.strip()), "")
    reason = binaries.exit_reason(returncode)
    return f"{said} ({reason})" if said and returncode < 0 else said or reason
