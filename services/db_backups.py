"""Database backups of an environment: pg_dump archives in backups/<env>/ (git-ignored, 0700).

`invoke db-backup` takes one (verified by reading it back) and rotates old ones by the profile's
`backups:` policy; `invoke teardown` and `invoke db-restore` take one before they change anything.
Each archive carries its environment's stamp, and a restore refuses an archive of another
environment unless that environment is named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services import credentials
from services.database import roles, stamp
from services.errors import ClusterError, EnvironmentMismatchError, UsageError
from services.files import private_dir
from services.postgres import clients, servers
from services.profiles import Profile
from services.project import Project
from services.rotation import plan_rotation

_ARCHIVE = re.compile(r"(?P<env>[a-z][a-z0-9_]*)-(?P<db>[a-z_][a-z0-9_]*)-(?P<stamp>\d{8}T\d{6}\d{6}Z)\.dump")


@dataclass(frozen=True)
class DatabaseBackup:
    """One pg_dump archive of backups/<env>/."""

    path: Path
    taken: datetime
    size: int


def backup_dir(profile: Profile, project: Project) -> Path:
    """Return backups/<env>/, created with mode 0700 (parents too)."""
    return private_dir(project.root, "backups", profile.name)


def backup_database(profile: Profile, project: Project, server: servers.Server) -> Path:
    """Dump the environment's database (server running) to a new dated archive; return its path."""
    owner = credentials.target(profile, project, "owner", socket_dir=str(server.socket_dir))
    taken = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    destination = backup_dir(profile, project) / f"{profile.name}-{profile.database.name}-{taken}.dump"
    clients.dump_database(server, profile.database.name, owner.user, owner.password, destination)
    return destination


def list_backups(profile: Profile, project: Project) -> list[DatabaseBackup]:
    """Return the environment's pg_dump archives, newest first (other files are ignored)."""
    folder = project.root / "backups" / profile.name
    found = []
    for path in folder.glob("*.dump") if folder.is_dir() else ():
        match = _ARCHIVE.fullmatch(path.name)
        if match and match["env"] == profile.name:
            taken = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
            found.append(DatabaseBackup(path, taken, path.stat().st_size))
    return sorted(found, key=lambda b: b.taken, reverse=True)


def rotate_backups(profile: Profile, project: Project, *, dry_run: bool = False) -> list[DatabaseBackup]:
    """Delete the archives the profile's rotation policy does not keep (never the newest); return them."""
    plan = plan_rotation([(b.taken, b) for b in list_backups(profile, project)], profile.backups)
    if not dry_run:
        for backup in plan.drop:
            backup.path.unlink(missing_ok=True)
    return plan.drop


def archive_environment(server: servers.Server, archive: Path) -> str | None:
    """Return the environment an archive is stamped with (its piper_metadata row), or None."""
    for line in clients.archive_table(server, archive, "piper_metadata").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0] == "environment":
            return fields[1]
    return None


def restore_backup(profile: Profile, project: Project, server: servers.Server, archive: Path,
                   *, from_env: str | None = None) -> Path:
    """Restore an archive over the environment's database after backing the database up.

    The archive must be stamped for this environment, or for the one named by from_env (the
    restored database is then stamped for this one). The restore runs in one transaction: on any
    error the database is left as it was. Return the backup taken first.
    """
    if not archive.is_file():
        raise UsageError(f"{archive} does not exist; see `invoke db-backup --list --env {profile.name}`")
    try:
        stamped = archive_environment(server, archive)
    except ClusterError as exc:  # pg_restore cannot read it: bad input, not a failure of the environment
        raise UsageError(f"{archive} is not a database backup piper-ops can read ({exc}); pass an archive made by "
                         f"`invoke db-backup`, see `invoke db-backup --list --env {profile.name}`") from None
    if stamped is None:
        raise UsageError(f"{archive} holds no environment stamp; it is not a piper-ops database backup")
    if stamped != profile.name and stamped != from_env:
        raise EnvironmentMismatchError(
            f"{archive.name} is a backup of environment {stamped!r}, not {profile.name!r}; pass --from-env {stamped} "
            f"to restore it into {profile.name} anyway"
        )
    before = backup_database(profile, project, server)
    owner = credentials.target(profile, project, "owner", socket_dir=str(server.socket_dir))
    # The restore, its new stamp and the application role's limits commit together, or not at all.
    then = [stamp.write_stamp_sql(profile.name)] if stamped != profile.name else []
    then += roles.application_role_sql(roles.ROLE_NAMES["app"])
    clients.restore_database(server, profile.database.name, owner.user, owner.password, archive, then=then)
    return before
