"""An environment's server and database over time: start, stop, back up, restore, tear down.

Each holds the environment's lock (services/environments/locking.py). What deletes or replaces
data takes a verified backup first and refuses a protected environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services import credentials, db_backups, envfile
from services.environments import access, locking, provisioning
from services.errors import ConfirmationRequired, PiperError, UsageError
from services.postgres import data_dirs, servers
from services.profiles import Profile, check_distinct
from services.project import ENV_VARIABLE, Project


def start_environment(profile: Profile, project: Project) -> servers.ServerState:
    """Start the environment's server (recovering from a crash); return its state."""
    with locking.environment_lock(profile, project):
        server = servers.prepare(profile, project)
        data_dirs.check_owner(server)
        return servers.start(server, config_file=profile.source)


def stop_environment(profile: Profile, project: Project) -> bool:
    """Stop the environment's server; return False when it was not running."""
    with locking.environment_lock(profile, project):
        server = servers.locate(profile, project)
        data_dirs.check_owner(server)
        return servers.stop(server)


def check_not_protected(profile: Profile, refusal: str) -> None:
    """Refuse a destructive operation on a protected environment; `refusal` says what to do instead."""
    if profile.protected:
        raise PiperError(f"environment {profile.name!r} is protected (protected: true in {profile.source}); {refusal}")


@dataclass(frozen=True)
class TeardownResult:
    data_dir: Path
    backup: Path | None
    existed: bool = True


def teardown_environment(profile: Profile, project: Project, *, confirmed: bool) -> TeardownResult:
    """Back up the database, then stop the server, delete its data and forget its secrets.

    The backup comes first and must succeed: a failed backup leaves everything as it was. It is
    always a restorable pg_dump archive: when `.env` lost the passwords, they are reset first
    (services/environments/access.py).
    """
    check_not_protected(profile, "it cannot be torn down")
    if not confirmed:
        raise ConfirmationRequired(f"tearing down {profile.name!r} deletes its database; confirm, or pass --yes")
    check_distinct(profile, project)
    data_dirs.check_removable(servers.locate(profile, project))  # before any lock file is made
    with locking.environment_lock(profile, project):
        server = servers.prepare(profile, project)
        backup = None
        existed = server.project_data_dir.exists() or server.project_data_dir.is_symlink()
        if servers.state(server).initialized:
            data_dirs.check_owner(server)
            server = _running_with_access(profile, project, server)
            if _database_exists(profile, project, server):
                backup = db_backups.backup_database(profile, project, server)
        data_dirs.remove(server)
        changes: dict[str, str | None] = {credentials.password_key(profile.name, r): None for r in ("admin", "owner", "app")}
        if envfile.read(project.env_file).get(ENV_VARIABLE) == profile.name:
            changes[ENV_VARIABLE] = None
        if project.env_file.exists():
            envfile.update(project.env_file, changes)
    return TeardownResult(server.project_data_dir, backup, existed)


@dataclass(frozen=True)
class BackupResult:
    archive: Path
    rotated_out: tuple[Path, ...]


@dataclass(frozen=True)
class RestoreResult:
    archive: Path
    backup_before: Path
    changes: tuple[str, ...]


def backup_environment(profile: Profile, project: Project) -> BackupResult:
    """Take a verified pg_dump archive of the environment's database, then rotate old archives."""
    _refuse_early(profile, project)
    with locking.environment_lock(profile, project):
        server = _running_server(profile, project)
        archive = db_backups.backup_database(profile, project, server)
        dropped = db_backups.rotate_backups(profile, project)
    return BackupResult(archive, tuple(b.path for b in dropped))


def restore_environment(profile: Profile, project: Project, archive: Path | None = None, *,
                        from_env: str | None = None, confirmed: bool) -> RestoreResult:
    """Back the database up, then restore an archive over it (the newest of the environment's by
    default) in one transaction; then migrate it to head and restore the application role's limits."""
    check_not_protected(profile, "restore it with your hosting provider's tools")
    if archive is None:
        newest = db_backups.list_backups(profile, project)
        if not newest:
            raise UsageError(f"environment {profile.name!r} has no backups in backups/{profile.name}/; "
                             f"take one with `invoke db-backup --env {profile.name}` or pass --file")
        archive = newest[0].path
    if not confirmed:
        raise ConfirmationRequired(f"restoring {archive.name} replaces the database of {profile.name!r}; confirm, or pass --yes")
    _refuse_early(profile, project)
    with locking.environment_lock(profile, project):
        server = _running_server(profile, project)
        before = db_backups.restore_backup(profile, project, server, archive, from_env=from_env)
        changes: list[str] = []
        owner = credentials.target(profile, project, "owner", socket_dir=str(server.socket_dir))
        provisioning.migrate_and_stamp(owner, profile, project, changes)
    return RestoreResult(archive, before, tuple(changes))


def _refuse_early(profile: Profile, project: Project) -> None:
    """Refuse, before any lock file or directory is made, what cannot be backed up or restored."""
    if profile.hosted:
        return  # the lock says why, before it makes anything
    check_distinct(profile, project)
    server = servers.locate(profile, project)
    if not servers.state(server).initialized:
        raise UsageError(f"environment {profile.name!r} has no database server; run `invoke setup --env {profile.name}`")
    data_dirs.check_owner(server)


def _running_server(profile: Profile, project: Project) -> servers.Server:
    server = servers.prepare(profile, project)
    data_dirs.check_owner(server)
    if not servers.state(server).initialized:
        raise UsageError(f"environment {profile.name!r} has no database server; run `invoke setup --env {profile.name}`")
    servers.start(server, config_file=profile.source)
    return server


def _running_with_access(profile: Profile, project: Project, server: servers.Server) -> servers.Server:
    """Start the server and make the passwords in .env its roles' own (see access.py); return the server."""
    notes: list[str] = []
    passwords = access.ensure_passwords(profile, project, notes)
    servers.start(server, config_file=profile.source)
    sockets = str(server.socket_dir)
    admin = credentials.target(profile, project, "admin", dbname="postgres", socket_dir=sockets)
    server = access.ensure_superuser(profile, server, admin, notes)
    if provisioning.database_exists(admin, profile.database.name):
        stale = access.stale_roles(profile, project, sockets)
        if stale:
            provisioning.bootstrap_database(admin, profile, passwords, reset=stale)
    return server


def _database_exists(profile: Profile, project: Project, server: servers.Server) -> bool:
    admin = credentials.target(profile, project, "admin", dbname="postgres", socket_dir=str(server.socket_dir))
    return provisioning.database_exists(admin, profile.database.name)
