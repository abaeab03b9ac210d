"""Database backups of an environment: pg_dump archives in backups/<env>/ (git-ignored, 0700).

Today `invoke teardown` takes one before it deletes anything. The roadmap's `invoke db-backup`
and `db-restore` build on this module (with rotation from services.rotation).
"""

from __future__ import annotations

from datetime import UTC, datetime
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
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    destination = backup_dir(profile, project) / f"{profile.name}-{profile.database.name}-{stamp}.dump"
    cluster.dump_database(server, profile.database.name, owner.user, owner.password, destination)
    return destination


def archive_data_directory(profile: Profile, project: Project, server: cluster.Server) -> Path:
    """Archive the stopped server's data directory to a new dated .tar.gz; return its path.

    The fallback when no password is left to dump with (a lost .env): a cold copy of the files,
    which the same PostgreSQL version can start from again.
    """
    import os
    import tarfile

    if cluster.state(server).running:
        raise RuntimeError("archive_data_directory needs a stopped server")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    destination = backup_dir(profile, project) / f"{profile.name}-datadir-{stamp}.tar.gz"
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as archive:
            archive.add(server.data_dir, arcname=profile.name)
            raw.flush()
            os.fsync(raw.fileno())
        os.link(partial, destination)  # never over an existing file
    finally:
        partial.unlink(missing_ok=True)
    return destination
