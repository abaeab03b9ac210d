"""psql sessions: one psql process fed statements through a pipe while the caller works between them.

A session runs the server's own psql (faster to start than Python's PostgreSQL driver) on a
database of a running server; the password reaches it through a private PGPASSFILE
(services.postgres.clients), and any value reaches it through psql variables, never arguments.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from services.postgres import clients, servers


class PsqlSession:
    """One psql connection fed statements through a pipe while the caller works between them.

    A caller can read a row, compute something from it, and send the next statement inside the
    same transaction. psql prints each result as soon as its statement ends; rows come back
    unaligned, fields separated by FIELD_SEPARATOR (PostgreSQL's text output of json, uuids and
    names never holds that byte or a raw newline).
    """

    FIELD_SEPARATOR = "\x1f"
    _DONE = "piper-psql-done"

    def __init__(self, process: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
        self._process = process
        self._errors = errors

    def send(self, text: str) -> None:
        """Send statements or meta-commands (each ending in a newline)."""
        assert self._process.stdin is not None
        self._process.stdin.write(text.encode("utf-8", "surrogateescape"))  # a path's undecodable bytes pass as they are
        self._process.stdin.flush()

    def set(self, name: str, value: str) -> None:
        """Set a psql variable, read back by statements as :'name'; any text is passed intact."""
        self.send(f"\\set {name} {psql_quote(value)}\n")

    def query_row(self, query: str) -> list[bytes] | None:
        """Run query (no trailing semicolon) and return the fields of its first row.

        None when it returned no row, or psql stopped on an error (it stops at the first one).
        """
        lines = self._run(f"{query}\n\\g\n")
        return lines[0].split(self.FIELD_SEPARATOR.encode()) if lines else None

    def query_to_file(self, query: str, path: Path) -> bool:
        """Run query and have psql write its rows into path, each row's fields back to back and
        ending in a newline (megabytes go from the server to the file without passing through
        Python). Return False when psql stopped on an error."""
        return self._run(f"\\pset fieldsep ''\n{query}\n\\g {psql_quote(str(Path(path).absolute()))}\n"
                         f"\\pset fieldsep {psql_quote(self.FIELD_SEPARATOR)}\n") is not None

    def _run(self, commands: str) -> list[bytes] | None:
        """Send commands, then collect what psql prints up to a marker; None if psql stopped first."""
        assert self._process.stdout is not None
        self.send(f"{commands}\\echo {self._DONE}\n")
        lines = []
        while (line := self._process.stdout.readline()).endswith(b"\n"):
            if line == f"{self._DONE}\n".encode():
                return lines
            lines.append(line[:-1])
        return None

    def finish(self) -> str | None:
        """End the input and wait for psql; return None on success, else its last error message."""
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        self._process.stdout.read()
        if self._process.wait() == 0:
            return None
        self._errors.seek(0)
        lines = self._errors.read().decode("utf-8", "replace").strip().splitlines()
        errors = [line.strip() for line in lines if any(level in line for level in ("ERROR", "FATAL", "error:"))]
        return (errors or lines or [f"psql exit code {self._process.returncode}"])[-1]


def psql_quote(value: str) -> str:
    """Return value as one quoted argument of a psql meta-command (psql un-escapes it exactly)."""
    escaped = []
    for char in value:
        if char in "'\\":
            escaped.append(char * 2 if char == "'" else "\\\\")
        elif ord(char) < 0x20 or char == "\x7f":
            escaped.append(f"\\{ord(char):03o}")
        else:
            escaped.append(char)
    return "'" + "".join(escaped) + "'"


@contextmanager
def psql_session(server: servers.Server, dbname: str, user: str, password: str, *, variables: dict[str, str],
                 options: str = "") -> Iterator[PsqlSession]:
    """Yield a PsqlSession on dbname as user; psql stops at the first error (ON_ERROR_STOP).

    variables are set first, through psql's input (not its arguments, which every local user can
    list); options go to the server as PGOPTIONS. The password reaches psql through a private
    PGPASSFILE, never an argument. psql is killed if the block leaves early (its transaction is
    then rolled back).
    """
    argv = [str(server.bin_dir / "psql"), "--no-psqlrc", "--quiet", "--no-align", "--tuples-only",
            f"--field-separator={PsqlSession.FIELD_SEPARATOR}", "--set=ON_ERROR_STOP=1",
            *clients.connection_args(server, user), f"--dbname={dbname}", "--file=-"]
    with clients.passfile_env(server, password) as env, tempfile.TemporaryFile() as errors:
        env["PGCLIENTENCODING"] = "UTF8"
        if options:
            env["PGOPTIONS"] = options
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        try:
            session = PsqlSession(process, errors)
            for name, value in variables.items():
                session.set(name, value)
            yield session
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
