"""An environment's server and database over time: start, stop, back up, restore, tear down.

Each holds the environment's lock (services/environments/locking.py). What deletes or replaces
data takes a verified backup first and refuses a protected environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services import connection_info, credentials, db_backups, envfile
from services.environments import access, locking, provisioning
from services.errors import ConfirmationRequired, PiperError, UsageError
from services.postgres import clients, data_dirs, servers
from services.profiles import Profile, check_distinct
from services.project import Project
from services.rotation import is_due


def start_environment(profile: Profile, project: Project) -> servers.ServerState:
    """Start the environment's server (recovering from a crash); return its state."""
    with locking.environment_lock(profile, project):
        server = servers.prepare(profile, project)
        data_dirs.check_owner(server)
        state = servers.start(server, config_file=profile.source)
        connection_info.refresh_in_env_file(profile, project)  # started on a new port: DATABASE_URL follows it
        return state


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


def teardown_environment(profile: Profile, project: Project, *, confirmed: bool,
                         progress: clients.ProgressCallback | None = None) -> TeardownResult:
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
                backup = db_backups.take_backup(profile, project, server, kind="pre-teardown", progress=progress)[0].path
        data_dirs.remove(server)
        changes: dict[str, str | None] = {credentials.password_key(profile.name, r): None for r in ("admin", "owner", "app")}
        changes.update(connection_info.deselect_changes(profile, project))  # PIPER_ENV and DATABASE_URL, if selected
        if project.env_file.exists():
            envfile.update(project.env_file, changes)
    return TeardownResult(server.project_data_dir, backup, existed)


@dataclass(frozen=True)
class BackupResult:
    backup: db_backups.DatabaseBackup
    rotated_out: tuple[Path, ...]
    dropped_scratch: bool = False

    @property
    def archive(self) -> Path:
        return self.backup.path


@dataclass(frozen=True)
class RestoreResult:
    chosen: db_backups.DatabaseBackup
    """The archive restored."""
    before: db_backups.DatabaseBackup
    """The safety copy taken first (kind pre-restore)."""
    changes: tuple[str, ...]
    rotated_out: tuple[Path, ...] = ()

    @property
    def archive(self) -> Path:
        return self.chosen.path

    @property
    def backup_before(self) -> Path:
        return self.before.path


@dataclass(frozen=True)
class Choice:
    """The archive a restore will use, how it was chosen, and the newer safety copies `--latest` passed over."""

    backup: db_backups.DatabaseBackup
    how: str
    passed_over: tuple[db_backups.DatabaseBackup, ...] = ()


def backup_environment(profile: Profile, project: Project, *, plain: bool = False,
                       progress: clients.ProgressCallback | None = None) -> BackupResult:
    """Take a verified pg_dump archive of the environment's database, then rotate old archives.

    A scratch database that a killed `--verify-restore` left is dropped first.
    """
    _refuse_early(profile, project)
    with locking.environment_lock(profile, project):
        return _backed_up(profile, project, _running_server(profile, project), "manual", plain, progress)


def _backed_up(profile: Profile, project: Project, server: servers.Server, kind: str, plain: bool,
               progress: clients.ProgressCallback | None) -> BackupResult:
    # Under the environment's lock, the server running: drop a killed verification's scratch, back up, rotate.
    dropped = db_backups.drop_scratch(profile, project, server)
    taken, rotated = db_backups.take_backup(profile, project, server, kind=kind, plain=plain, progress=progress)
    return BackupResult(taken, tuple(b.path for b in rotated), dropped)


def auto_backup(profile: Profile, project: Project, *, now: datetime | None = None,
                progress: clients.ProgressCallback | None = None) -> BackupResult | None:
    """Take a `scheduled` backup when the profile's `backups.auto` says one is due; None when none is.

    Cheap when nothing is due: the names in backups/<env>/ alone say so (no server, no lock).
    When one is due, the check is made again under the environment's lock, so two commands at
    once never take two. The server must be running already: this never starts one.
    """
    if profile.hosted or profile.backups.auto == "off":
        return None
    now = now or datetime.now(UTC)
    if not is_due(profile.backups, db_backups.newest_taken(profile, project), now):
        return None
    server = servers.locate(profile, project)
    if not servers.state(server).running:
        return None
    with locking.environment_lock(profile, project):
        if not is_due(profile.backups, db_backups.newest_taken(profile, project), now):
            return None  # another command took it while this one waited
        server = servers.prepare(profile, project)
        data_dirs.check_owner(server)
        if not servers.state(server).running or not _database_exists(profile, project, server):
            return None
        return _backed_up(profile, project, server, "scheduled", False, progress)


def has_server(profile: Profile, project: Project) -> bool:
    """Return whether the environment has a local server already (a setup then may have data to back up)."""
    return not profile.hosted and servers.state(servers.locate(profile, project)).initialized


def choose_archive(profile: Profile, project: Project, *, file: Path | None = None,
                   pick: int | None = None) -> Choice:
    """Return the archive a restore means: --file, --pick N (the --list numbering), or else the newest
    archive that is not a safety copy (a restore made right after a restore does not undo it)."""
    if file is not None:
        match = [b for b in db_backups.list_backups(profile, project) if b.path == file]
        if match:
            return Choice(match[0], "--file")
        if not file.is_file():
            raise UsageError(f"{file} does not exist; see `invoke db-backup --list --env {profile.name}`")
        if file.suffix != ".dump":
            raise UsageError(f"{file} is not a pg_dump archive (a .dump file of `invoke db-backup`); see "
                             f"`invoke db-backup --list --env {profile.name}`")
        size = file.stat().st_size
        return Choice(db_backups.DatabaseBackup(file, datetime.fromtimestamp(file.stat().st_mtime, UTC), size),
                      "--file")
    backups = db_backups.list_backups(profile, project)
    if not backups:
        raise UsageError(f"environment {profile.name!r} has no backups in backups/{profile.name}/; "
                         f"take one with `invoke db-backup --env {profile.name}` or pass --file")
    if pick is not None:
        if not 1 <= pick <= len(backups):
            raise UsageError(f"--pick {pick} is not in the list; choose 1 to {len(backups)} "
                             f"(see `invoke db-backup --list --env {profile.name}`)")
        return Choice(backups[pick - 1], f"--pick {pick}")
    latest = db_backups.latest_restorable(backups)
    if latest is None:
        raise UsageError(f"environment {profile.name!r} has only safety copies in backups/{profile.name}/; "
                         f"choose one with --pick N (see `invoke db-backup --list --env {profile.name}`)")
    newer = tuple(b for b in backups if b.taken > latest.taken and b.safety)
    return Choice(latest, "the newest backup that is not a safety copy", newer)


def restore_environment(profile: Profile, project: Project,
                        archive: Path | db_backups.DatabaseBackup | None = None, *, from_env: str | None = None,
                        confirmed: bool, progress: clients.ProgressCallback | None = None) -> RestoreResult:
    """Back the database up, then restore an archive over it (by default the newest that is no safety
    copy) in one transaction; then migrate it to head and restore the application role's limits.

    archive is a path, or the backup `choose_archive` chose already (the edge shows it before asking).
    """
    check_not_protected(profile, "restore it with your hosting provider's tools")
    chosen = (archive if isinstance(archive, db_backups.DatabaseBackup)
              else choose_archive(profile, project, file=archive).backup)
    archive = chosen.path
    if not confirmed:
        raise ConfirmationRequired(f"restoring {archive.name} replaces the database of {profile.name!r}; confirm, or pass --yes")
    _refuse_early(profile, project)
    with locking.environment_lock(profile, project):
        server = _running_server(profile, project)
        db_backups.drop_scratch(profile, project, server)
        before = db_backups.restore_backup(profile, project, server, archive, from_env=from_env, progress=progress)
        changes: list[str] = []
        owner = credentials.target(profile, project, "owner", socket_dir=str(server.socket_dir))
        provisioning.migrate_and_stamp(owner, profile, project, changes)
        rotated = db_backups.rotate_backups(profile, project, protect=(archive, before.path))
    return RestoreResult(chosen, before, tuple(changes), tuple(b.path for b in rotated))


def verify_environment(profile: Profile, project: Project, *,
                       progress: clients.ProgressCallback | None = None) -> db_backups.VerifyResult:
    """Restore the newest archive into a scratch database on the environment's server and compare it."""
    _refuse_early(profile, project)
    with locking.environment_lock(profile, project):
        candidates = [b for b in db_backups.list_backups(profile, project) if not b.plain]
        if not candidates:
            raise UsageError(f"environment {profile.name!r} has no backups to verify; take one with "
                             f"`invoke db-backup --env {profile.name}`")
        server = _running_server(profile, project)
        return db_backups.verify_restore(profile, project, server, candidates[0], progress=progress)


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
