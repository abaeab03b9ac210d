"""Database backups of an environment: pg_dump archives in backups/<env>/ (git-ignored, 0700).

Today `invoke teardown` takes one before it deletes anything. The roadmap's `invoke db-backup`
and `db-restore` build on this module (with rotation from services.rotation).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from services import cluster
from services.database import connection
from services.profiles import Profile
from services.project import Project


def backup_dir(profile: Profile, project: Project) -> Path:
    """Return backups/<env>/, created with mode 0700 (parents too)."""
    folder = project.root / "backups" / profile.name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for directory in (folder.parent, folder):
        directory.chmod(0o700)
    return folder


def backup_database(profile: Profile, project: Project, server: cluster.Server) -> Path:
    """Dump the environment's database (server running) to a new dated archive; return its path."""
    owner = connection.target(profile, project, "owner", socket_dir=str(server.socket_dir))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    destination = backup_dir(profile, project) / f"{profile.name}-{profile.database.name}-{stamp}.dump"
    cluster.dump_database(server, profile.database.name, owner.user, owner.password, destination)
    return destination
