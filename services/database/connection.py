"""Connections to one database as one role, built from explicit settings (a `Target`).

Nothing here reads `.env` or locates a server: services/credentials.py works out a Target from
an environment's profile and secrets. Passwords never leave this module in a string meant for
people: `Target.display()` hides them, and a failed connection's message names the database only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.errors import ClusterError, UsageError

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

class AuthenticationFailed(ClusterError):
    """The server refused the role's password."""


#: sslmodes that allow a connection without TLS.
PLAIN_SSLMODES = ("disable", "allow", "prefer")


@dataclass(frozen=True)
class Target:
    """Everything needed to connect to one database as one role."""

    environment: str
    host: str
    port: int | None
    dbname: str
    user: str
    password: str = field(repr=False)
    sslmode: str | None = None
    sslrootcert: str | None = None
    url_env: str | None = None
    """For a hosted database: the variable its URL came from."""

    def conninfo(self) -> str:
        """Return a libpq connection string (it holds the password: never print it)."""
        from psycopg.conninfo import make_conninfo

        params: dict[str, object] = {"host": self.host, "dbname": self.dbname, "user": self.user,
                                     "password": self.password, "connect_timeout": 10,
                                     "application_name": "piper-ops"}
        if self.port is not None:
            params["port"] = self.port
        if self.sslmode:
            params["sslmode"] = self.sslmode
        if self.sslrootcert:
            params["sslrootcert"] = self.sslrootcert
        return make_conninfo("", **params)

    def display(self) -> str:
        """Return a URL for people: postgresql://user:***@host:port/dbname."""
        port = f":{self.port}" if self.port else ""
        host = self.host if not self.host.startswith("/") else f"[socket {self.host}]"
        return f"postgresql://{self.user}:***@{host}{port}/{self.dbname}"


def tls_mode(sslmode: str, *, variable: str, environment: str, required: str) -> str:
    """Return a hosted URL's sslmode (required when it names none); one that allows a plain connection is refused."""
    sslmode = sslmode or required
    if sslmode in PLAIN_SSLMODES:
        raise UsageError(f"{variable} asks for sslmode={sslmode}, but environment {environment!r} requires TLS; "
                         f"use sslmode={required}")
    return sslmode


def target_from_url(url: str, *, environment: str, variable: str, default_dbname: str, required_sslmode: str,
                    sslrootcert: str | None = None) -> Target:
    """Return the Target of a hosted database's URL; TLS is required whatever the URL says.

    variable names where the URL came from (for messages); a URL without sslmode gets
    required_sslmode, and one that allows a plain connection is refused.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except ProgrammingError:
        raise UsageError(f"{variable} is not a valid PostgreSQL URL; use postgresql://user:password@host:port/dbname") from None
    port = str(params.get("port") or "")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise UsageError(f"{variable} is not a valid PostgreSQL URL (its port is not a number from 1 to 65535); "
                         "use postgresql://user:password@host:port/dbname")
    sslmode = tls_mode(str(params.get("sslmode") or ""), variable=variable, environment=environment,
                       required=required_sslmode)
    return Target(
        environment=environment,
        host=str(params.get("host") or "localhost"),
        port=int(port) if port else None,
        dbname=str(params.get("dbname") or default_dbname),
        user=str(params.get("user") or ""),
        password=str(params.get("password") or ""),
        sslmode=sslmode,
        sslrootcert=str(params.get("sslrootcert") or sslrootcert or "") or None,
        url_env=variable,
    )


def connect(where: Target, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection; a failure is a ClusterError that names the database, not the password."""
    import psycopg

    try:
        return psycopg.connect(where.conninfo(), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        # libpq's whole message, on one line: its last line alone often lacks the reason.
        reason = " ".join(part.strip() for part in str(exc).split("\n") if part.strip()) or type(exc).__name__
        reason = reason.replace(where.password, "***") if where.password else reason
        if "password authentication failed" in reason:
            fix = (f"check the password in {where.url_env}" if where.url_env else
                   f"run `invoke setup --env {where.environment}`, which gives the role the password in .env again")
            raise AuthenticationFailed(f"cannot connect to environment {where.environment!r} at {where.display()}: "
                                       f"{reason}; {fix}") from None
        fix = (f"check the URL in {where.url_env} and that the server offers TLS" if where.url_env
               else f"run `invoke status` and `invoke db-start --env {where.environment}`")
        raise ClusterError(f"cannot connect to environment {where.environment!r} at {where.display()}: {reason}; {fix}") from None


@contextmanager
def engine(where: Target) -> Iterator[Engine]:
    """Yield a SQLAlchemy engine over psycopg for this target, disposed of on exit."""
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    conninfo = where.conninfo()

    def _connect() -> psycopg.Connection:
        return psycopg.connect(conninfo)

    eng = create_engine("postgresql+psycopg://", creator=_connect, poolclass=NullPool)
    try:
        yield eng
    finally:
        eng.dispose()
