"""How the application (and any tool) reaches an environment's database: DATABASE_URL and libpq's PG* variables.

A local server is reached over loopback TCP (127.0.0.1, or ::1 for a profile that listens there)
with the role's password, as `postgresql://piper_app:PASSWORD@127.0.0.1:PORT/DBNAME` (the
password percent-encoded): the one URL every driver and tool understands. A profile that listens
on its socket only (listen_addresses '') gets a URL naming the socket directory (?host=...). The
hosted production database's URL is the one in the variable its profile names, with the TLS
its profile requires added when the URL leaves it out.

`.env` holds DATABASE_URL for the application role of the selected environment (12-factor); it is
written in the same atomic update as PIPER_ENV (`select_in_env_file`), and whatever changes the
passwords or forgets the selection keeps it right (`password_changes`, `deselect_changes`).
Only the standard library is imported here: `invoke env` stays fast.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from services import credentials, envfile
from services.database.connection import Target, tls_mode
from services.database.roles import ROLE_NAMES, Role
from services.errors import ClusterError, UsageError
from services.postgres import psql_terminal, servers
from services.profiles import Profile
from services.project import ENV_VARIABLE, Project

#: The variable the application reads (12-factor), in `.env` and in `invoke env`'s output.
DATABASE_URL = "DATABASE_URL"
#: The roles `invoke env` and `invoke psql` connect as: the application's, and the owner's for admin work.
ROLES = ("app", "owner")
FORMATS = ("dotenv", "shell", "json")
#: What stands for the password in output meant for people.
MASK = "***"
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.,/:@%+=")


@dataclass(frozen=True)
class ConnectionInfo(Target):
    """Where one environment's database is and who connects to it: a Target (its host 127.0.0.1, ::1, a
    socket directory or the hosted database's host name) with the role's name and, hosted, its URL."""

    role: str = "app"
    hosted_url: str | None = field(default=None, repr=False)
    """For a hosted database: its URL, as its variable holds it."""

    def url(self, *, show_password: bool = True) -> str:
        """Return the postgresql:// URL (with the password, unless show_password is False)."""
        if self.hosted_url is not None:
            url = self.hosted_url if show_password else _replace_password(self.hosted_url, MASK)
            return _with_tls(url, self.sslmode, self.sslrootcert)
        secret = quote(self.password, safe="") if show_password else MASK
        credentials_part = f"{quote(self.user, safe='')}:{secret}@"
        if self.host.startswith("/"):
            query = urlencode({"host": self.host, "port": self.port})
            return f"postgresql://{credentials_part}/{quote(self.dbname, safe='')}?{query}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{credentials_part}{host}:{self.port}/{quote(self.dbname, safe='')}"

    def variables(self, *, show_password: bool) -> dict[str, str]:
        """Return DATABASE_URL and the PG* variables libpq's tools read; PGPASSWORD only with show_password."""
        values = {DATABASE_URL: self.url(show_password=show_password), "PGHOST": self.host,
                  "PGPORT": "" if self.port is None else str(self.port), "PGDATABASE": self.dbname,
                  "PGUSER": self.user}
        if not values["PGPORT"]:
            del values["PGPORT"]
        if self.sslmode:
            values["PGSSLMODE"] = self.sslmode
        if self.sslrootcert:
            values["PGSSLROOTCERT"] = self.sslrootcert
        if show_password:
            values["PGPASSWORD"] = self.password
        return values


def connection_info(profile: Profile, project: Project, role: str = "app") -> ConnectionInfo:
    """Return how the given role reaches the environment's database, from `.env` and the server's location."""
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    if profile.hosted:
        return _hosted_info(profile, credentials.known_secrets(project), role)
    server = servers.locate(profile, project)
    where = credentials.target(profile, project, cast(Role, role), socket_dir=str(server.socket_dir))
    return local_info(server, role, where.dbname, where.user, where.password)


def local_info(server: servers.Server, role: str, dbname: str, user: str, password: str) -> ConnectionInfo:
    """Return how user reaches dbname on a local server: loopback TCP where it listens, else its socket."""
    host = server.tcp_host or str(server.socket_dir)
    return ConnectionInfo(server.environment, host, server.port, dbname, user, password, role=role)


def render(variables: Mapping[str, str], output_format: str) -> str:
    """Return the variables as a .env file, shell `export` lines (safely quoted) or a JSON object."""
    if output_format == "json":
        return json.dumps(dict(variables), indent=2) + "\n"
    if output_format == "shell":
        return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in variables.items())
    if output_format == "dotenv":
        return "".join(f"{key}={_dotenv_value(value)}\n" for key, value in variables.items())
    raise UsageError(f"unknown format {output_format!r}; choose from {', '.join(FORMATS)}")


# --- .env: DATABASE_URL beside PIPER_ENV ---------------------------------------------------------


def select_in_env_file(profile: Profile, project: Project) -> list[str]:
    """Select the environment in `.env` (PIPER_ENV) and write its application DATABASE_URL, in one atomic update.

    Return what changed, for setup's report (nothing when both were right already). A hosted
    environment whose application URL is not known gets no DATABASE_URL: it never goes on naming
    the environment selected before.
    """
    url = application_url(profile, project)
    changed = envfile.update_with(project.env_file, lambda current: {ENV_VARIABLE: profile.name, DATABASE_URL: url})
    said = []
    if ENV_VARIABLE in changed:
        said.append(f"selected {profile.name} in {project.env_file.name}")
    if DATABASE_URL in changed:
        said.append(f"wrote {DATABASE_URL} (the application role, {_masked(url)}) in {project.env_file.name}"
                    if url else f"removed {DATABASE_URL} from {project.env_file.name}: the application URL of "
                                f"{profile.name} is not set ({profile.database.app_url_env})")
    return said


def application_url(profile: Profile, project: Project, *, app_password: str | None = None) -> str | None:
    """Return the environment's DATABASE_URL (the application role), or None when its password or URL is unknown.

    app_password, when given, is used instead of the one `.env` holds (a password about to be written).
    """
    if profile.hosted:
        known = credentials.known_secrets(project)
        if not profile.database.app_url_env or not known.get(profile.database.app_url_env):
            return None
        return _hosted_info(profile, known, "app").url()
    if app_password is None:
        app_password = credentials.known_secrets(project).get(credentials.password_key(profile.name, "app"))
        if not app_password:
            return None
    server = servers.locate(profile, project)
    return local_info(server, "app", profile.database.name, ROLE_NAMES["app"], app_password).url()


def refresh_in_env_file(profile: Profile, project: Project) -> list[str]:
    """Rewrite DATABASE_URL when the environment is the selected one and its URL changed (a server
    started on a new port); return what changed. An environment that is not selected is left alone."""
    url = application_url(profile, project)
    changed = envfile.update_with(project.env_file, lambda current: (
        {DATABASE_URL: url} if current.get(ENV_VARIABLE) == profile.name and url else {}))
    return [f"wrote {DATABASE_URL} ({_masked(url)}) in {project.env_file.name}"] if changed else []


def stale_env_file_url(profile: Profile, project: Project) -> str | None:
    """Return a warning when `.env` selects the environment but its DATABASE_URL is not the environment's URL now."""
    values = envfile.read(project.env_file)
    if values.get(ENV_VARIABLE) != profile.name or DATABASE_URL not in values:
        return None
    url = application_url(profile, project)
    if url is None or values[DATABASE_URL] == url:
        return None
    return (f"{DATABASE_URL} in {project.env_file.name} is not {profile.name}'s URL now ({_masked(url)}); run "
            f"`invoke setup --env {profile.name}` to write it again")


def password_changes(profile: Profile, project: Project, app_password: str) -> dict[str, str | None]:
    """Return the `.env` change that keeps DATABASE_URL right when the environment's application
    password is about to change: written in the same update as the password, if it is the selected one."""
    if envfile.read(project.env_file).get(ENV_VARIABLE) != profile.name:
        return {}
    return {DATABASE_URL: application_url(profile, project, app_password=app_password)}


def deselect_changes(profile: Profile, project: Project) -> dict[str, str | None]:
    """Return the `.env` changes that forget the environment when it is the selected one (teardown):
    PIPER_ENV and its DATABASE_URL go together."""
    if envfile.read(project.env_file).get(ENV_VARIABLE) != profile.name:
        return {}
    return {ENV_VARIABLE: None, DATABASE_URL: None}


# --- hosted ---------------------------------------------------------------------------------------


def _hosted_info(profile: Profile, known: Mapping[str, str], role: str) -> ConnectionInfo:
    """Read the hosted database's URL (the application's, database.app_url_env, or the owner's) without a driver
    (credentials.target would parse it with psycopg's, whose import alone is half of `invoke env`'s budget)."""
    variable, url = credentials.hosted_url(profile, known, role)
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise UsageError(f"{variable} is not a postgresql:// URL; use postgresql://user:password@host:port/dbname")
    query = dict(parse_qsl(parts.query))
    sslmode = tls_mode(query.get("sslmode", ""), variable=variable, environment=profile.name,
                       required=profile.database.sslmode)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"{variable} is not a valid PostgreSQL URL (its port is not a number from 1 to 65535); "
                         "use postgresql://user:password@host:port/dbname") from None
    return ConnectionInfo(profile.name, query.get("host") or parts.hostname or "localhost", port,
                          unquote(parts.path.lstrip("/")) or profile.database.name, unquote(parts.username or ""),
                          unquote(parts.password or ""), sslmode,
                          query.get("sslrootcert") or profile.database.sslrootcert, url_env=variable, role=role,
                          hosted_url=url)


def _replace_password(url: str, secret: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:{secret}@{host}"))


def _with_tls(url: str, sslmode: str | None, sslrootcert: str | None) -> str:
    """Add the sslmode (and root certificate) the profile requires to a URL that names none."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    extra = {key: value for key, value in (("sslmode", sslmode), ("sslrootcert", sslrootcert))
             if value and key not in query}
    if not extra:
        return url
    return urlunsplit(parts._replace(query="&".join(filter(None, (parts.query, urlencode(extra))))))


def _masked(url: str | None) -> str:
    return _replace_password(url, MASK) if url else ""


def _dotenv_value(value: str) -> str:
    if value and set(value) <= _SAFE:
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    return json.dumps(value)  # double-quoted with backslash escapes, as dotenv readers take it


# --- psql -------------------------------------------------------------------------------------------


def open_psql(profile: Profile, project: Project, role: str = "app", args: Sequence[str] = ()) -> int:
    """Run the server's own psql on the environment's database as role, on this terminal; return its exit code."""
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    if profile.hosted:
        raise UsageError(f"environment {profile.name!r} is hosted and piper-ops has no psql of its server; run "
                         f"`eval \"$(invoke env --env {profile.name} --format shell --show-password)\"` and then "
                         "your own psql")
    server = servers.locate(profile, project)
    if not servers.state(server).running:
        raise ClusterError(f"the server of environment {profile.name!r} is not running; run "
                           f"`invoke db-start --env {profile.name}`")
    where = credentials.target(profile, project, cast(Role, role), socket_dir=str(server.socket_dir))
    return psql_terminal.run_psql(server, where.dbname, where.user, where.password, args)
