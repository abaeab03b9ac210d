"""Getting into an environment's own server with the passwords in `.env`, whatever became of `.env`.

Whoever owns a data directory owns its data (DESIGN invariant 10): a `.env` that was deleted,
restored from an old copy or left behind by a re-clone never locks its owner out. Missing
passwords are generated (and written to `.env` before any server uses them); a superuser whose
password is not the one in `.env` gets it back through single-user mode
(services/postgres/single_user.py); the owner and application roles then get theirs through the
superuser. Nothing else is changed, and each step is safe to repeat from any point: a run killed
half-way is finished by the next.
"""

from __future__ import annotations

import secrets as token_source
from dataclasses import replace

from services import connection_info, credentials, envfile
from services.database import connection, roles
from services.database.connection import Target
from services.postgres import data_dirs, servers, single_user
from services.profiles import Profile
from services.project import Project

ROLES = ("admin", "owner", "app")


def ensure_passwords(profile: Profile, project: Project, changes: list[str]) -> dict[str, str]:
    """Return the environment's passwords from `.env`, generating (and writing) the missing ones first.

    They reach `.env` before any role has them, so a crash never leaves a server whose password
    is known nowhere; a role that does not have its password yet gets it from `ensure_access`.
    """
    known = credentials.known_secrets(project)
    found = {role: known.get(credentials.password_key(profile.name, role)) for role in ROLES}
    if all(found.values()):
        return {role: str(value) for role, value in found.items()}
    created = {role: value or token_source.token_urlsafe(32) for role, value in found.items()}
    written: dict[str, str | None] = {credentials.password_key(profile.name, r): created[r] for r in ROLES}
    written.update(connection_info.password_changes(profile, project, created["app"]))  # DATABASE_URL follows
    envfile.update(project.env_file, written)
    missing = ", ".join(credentials.password_key(profile.name, r) for r in ROLES if not found[r])
    changes.append(f"generated passwords for {profile.name} in {project.env_file.name} (mode 0600): {missing}")
    return {role: str(value) for role, value in created.items()}


def ensure_superuser(profile: Profile, server: servers.Server, admin: Target, changes: list[str]) -> servers.Server:
    """Make the password in `.env` the superuser's own (server running); return the server.

    A cluster fresh from the template still has its throwaway password, which is replaced. When
    neither works (`.env` lost or stale), the server is stopped, the password is reset in
    single-user mode and the server started again.
    """
    initial = data_dirs.initial_password(server)
    if can_authenticate(admin):
        if initial is not None:
            data_dirs.forget_initial_password(server)  # a run killed after the change, before this
        return server
    if initial is not None and can_authenticate(replace(admin, password=initial)):
        with connection.connect(replace(admin, password=initial), autocommit=True) as conn:
            roles.set_role_password(conn, roles.SUPERUSER, admin.password)
        data_dirs.forget_initial_password(server)
        return server
    servers.stop(server)
    single_user.reset_superuser_password(server, admin.password)
    data_dirs.forget_initial_password(server)
    servers.start(server, config_file=profile.source)
    changes.append(f"reset the password of {roles.SUPERUSER}: the one in .env was not the server's (lost or stale "
                   "passwords); the data is untouched")
    return server


def stale_roles(profile: Profile, project: Project, socket_dir: str) -> frozenset[str]:
    """Return the roles among owner and app that exist but do not take their password from `.env`."""
    stale = set()
    for role in ("owner", "app"):
        if not can_authenticate(credentials.target(profile, project, role, socket_dir=socket_dir)):
            stale.add(role)
    return frozenset(stale)


def can_authenticate(where: Target) -> bool:
    """Return True when the password of where opens its database; False when the server refuses it.

    Any other failure (the server down, the database missing) is raised: it is not about passwords.
    """
    try:
        with connection.connect(where):
            return True
    except connection.AuthenticationFailed:
        return False
