"""Connections to an environment's database, built from its profile and the secrets in `.env`.

Local servers are reached through their private unix socket; the hosted production database
through the URL in the variable its profile names, always with TLS. Passwords never leave this
module in a string meant for people: `Target.display()` hides them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from services import envfile
from services.errors import ClusterError, UsageError
from services.profiles import Profile
from services.project import Project

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

Role = Literal["admin", "owner", "app"]

#: Role names inside every local server. Each environment has its own server, so the names can
#: repeat; the database name and the environment stamp tell the environments apart.
ROLE_NAMES: dict[str, str] = {"admin": "piper_admin", "owner": "piper_owner", "app": "piper_app"}
PLAIN_SSLMODES = ("disable", "allow", "prefer")


def password_key(environment: str, role: Role) -> str:
    """Return the .env key holding an environment role's password."""
    return f"PIPER_{environment.upper()}_{role.upper()}_PASSWORD"


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


def secrets(project: Project) -> dict[str, str]:
    """Return the secrets visible to piper-ops: the .env file, overridden by the process environment."""
    values = envfile.read(project.env_file)
    values.update({k: v for k, v in os.environ.items() if k.startswith("PIPER_")})
    return values


def target(profile: Profile, project: Project, role: Role = "app", *, dbname: str | None = None,
           socket_dir: str | None = None) -> Target:
    """Return how to connect to the environment's database as the given role."""
    known = secrets(project)
    if profile.hosted:
        return _hosted_target(profile, known, role)
    key = password_key(profile.name, role)
    password = known.get(key)
    if not password:
        raise UsageError(
            f"{project.env_file} holds no {key} for environment {profile.name!r}; run "
            f"`invoke setup --env {profile.name}`, or restore .env from your backup"
        )
    if socket_dir is None:
        from services.postgres import servers

        socket_dir = str(servers.locate(profile, project).socket_dir)
    return Target(profile.name, socket_dir, profile.database.port, dbname or profile.database.name,
                  ROLE_NAMES[role], password)


def _hosted_target(profile: Profile, known: dict[str, str], role: Role) -> Target:
    """The hosted database's URL: the application role's (database.app_url_env) for "app", the
    owner's (database.url_env) otherwise. TLS is required whatever the URL says."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    variable = profile.database.url_env or ""
    if role == "app":
        if not profile.database.app_url_env:
            raise UsageError(f"environment {profile.name!r} names no application role URL; set database.app_url_env "
                             f"in {profile.source} (the owner's URL bypasses row-level security)")
        variable = profile.database.app_url_env
    url = known.get(variable)
    if not url:
        raise UsageError(f"environment {profile.name!r} is hosted and {variable} is not set; put its URL in .env or the shell")
    try:
        params = conninfo_to_dict(url)
    except ProgrammingError:
        raise UsageError(f"{variable} is not a valid PostgreSQL URL; use postgresql://user:password@host:port/dbname") from None
    sslmode = str(params.get("sslmode") or profile.database.sslmode)
    if sslmode in PLAIN_SSLMODES:
        raise UsageError(
            f"{variable} asks for sslmode={sslmode}, but environment {profile.name!r} requires TLS; "
            f"use sslmode={profile.database.sslmode}"
        )
    return Target(
        environment=profile.name,
        host=str(params.get("host") or "localhost"),
        port=int(params["port"]) if params.get("port") else None,
        dbname=str(params.get("dbname") or profile.database.name),
        user=str(params.get("user") or ""),
        password=str(params.get("password") or ""),
        sslmode=sslmode,
        sslrootcert=str(params.get("sslrootcert") or profile.database.sslrootcert or "") or None,
        url_env=variable,
    )


def connect(where: Target, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection; a failure is a ClusterError that names the database, not the password."""
    import psycopg

    try:
        return psycopg.connect(where.conninfo(), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        reason = reason.replace(where.password, "***") if where.password else reason
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

