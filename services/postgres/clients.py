"""Client tools on a running server: pg_dump and pg_restore archives of a database.

Client tools run as the caller (they connect through the server's socket) and get a password
only through a private PGPASSFILE, never through their arguments or a PGPASSWORD variable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.errors import ClusterError
from services.files import publish_new
from services.postgres import binaries, servers


def dump_database(server: servers.Server, dbname: str, user: str, password: str, destination: Path) -> None:
    """Write a pg_dump custom-format archive of dbname to destination, then check it reads back.

    The archive is written under a temporary name and linked into place only when complete and
    verified, so an existing file is never overwritten.
    """
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        with passfile_env(password) as env:
            for argv in (["pg_dump", "--format=custom", f"--file={partial}", *connection_args(server, user), dbname],
                         ["pg_restore", "--list", str(partial)]):
                _run_client(server, argv, env, what=f"backup of {dbname}")
        os.chmod(partial, 0o600)
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


def restore_database(server: servers.Server, dbname: str, user: str, password: str, archive: Path) -> None:
    """Restore a pg_dump archive over dbname in one transaction: all of it, or nothing on any error."""
    with passfile_env(password) as env:
        _run_client(server, ["pg_restore", "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
                             "--no-owner", f"--role={user}", f"--dbname={dbname}", *connection_args(server, user),
                             str(archive)], env, what=f"restore of {archive.name} into {dbname}")


def connection_args(server: servers.Server, user: str) -> list[str]:
    """Return the arguments that point a client tool at the server's socket as user, never asking for a password."""
    return [f"--host={server.socket_dir}", f"--port={server.port}", f"--username={user}", "--no-password"]


@contextmanager
def passfile_env(password: str) -> Iterator[dict[str, str]]:
    """Yield an environment for client tools whose PGPASSFILE names a private file holding the password.

    Client tools get the password this way, never through their arguments.
    """
    private = Path(tempfile.mkdtemp(prefix="piper-client-"))
    try:
        passfile = private / "pgpass"
        passfile.write_text(f"*:*:*:*:{password.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}\n")
        os.chmod(passfile, 0o600)
        yield {**binaries.child_env(), "PGPASSFILE": str(passfile)}
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _run_client(server: servers.Server, argv: list[str], env: dict[str, str], *, what: str) -> str:
    result = subprocess.run([str(server.bin_dir / argv[0]), *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, env=env, check=False)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise ClusterError(f"{what} in environment {server.environment!r} failed: {detail}")
    return result.stdout
