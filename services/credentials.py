"""How to reach an environment's database as one of its roles: the secrets of `.env`, the server's socket.

This is where a profile, the project's `.env` (overridden by PIPER_* variables of the process) and
the local server's location become a `services.database.connection.Target`. Local servers are
reached through their private unix socket with the password setup generated for the role; the
hosted production database through the URL in the variable its profile names, always with TLS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from services import envfile
from services.database.connection import Target, target_from_url
from services.database.roles import ROLE_NAMES, Role
from services.errors import UsageError
from services.postgres import servers
from services.profiles import Profile
from services.project import Project


def password_key(environment: str, role: Role) -> str:
    """Return the .env key holding an environment role's password."""
    return f"PIPER_{environment.upper()}_{role.upper()}_PASSWORD"


def known_secrets(project: Project) -> dict[str, str]:
    """Return the secrets visible to piper-ops: the .env file, overridden by the process environment."""
    values = envfile.read(project.env_file)
    values.update({k: v for k, v in os.environ.items() if k.startswith("PIPER_")})
    return values


def target(profile: Profile, project: Project, role: Role = "app", *, dbname: str | None = None,
           socket_dir: str | None = None) -> Target:
    """Return how to connect to the environment's database as the given role.

    socket_dir, when given, spares locating the server (setup knows where it just started it).
    """
    known = known_secrets(project)
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
        server = servers.locate(profile, project)
        socket_dir, port = str(server.socket_dir), server.port
    else:
        port = servers.listening_port(profile, project)
    return Target(profile.name, socket_dir, port, dbname or profile.database.name, ROLE_NAMES[role], password)


def hosted_url(profile: Profile, known: Mapping[str, str], role: str) -> tuple[str, str]:
    """Return (variable, URL) of the hosted database for a role: the application role's
    (database.app_url_env) for "app", the owner's (database.url_env) otherwise."""
    variable = profile.database.url_env or ""
    if role == "app":
        if not profile.database.app_url_env:
            raise UsageError(f"environment {profile.name!r} names no application role URL; set database.app_url_env "
                             f"in {profile.source} (the owner's URL bypasses row-level security)")
        variable = profile.database.app_url_env
    url = known.get(variable)
    if not url:
        raise UsageError(f"environment {profile.name!r} is hosted and {variable} is not set; put its URL in .env or the shell")
    return variable, url


def _hosted_target(profile: Profile, known: dict[str, str], role: Role) -> Target:
    variable, url = hosted_url(profile, known, role)
    return target_from_url(url, environment=profile.name, variable=variable, default_dbname=profile.database.name,
                           required_sslmode=profile.database.sslmode, sslrootcert=profile.database.sslrootcert)
