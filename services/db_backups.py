"""Database backups of an environment: pg_dump archives in backups/<env>/ (git-ignored, 0700).

An archive is `<env>-<db>-<UTC time>-<kind>.dump` (custom format, what db-restore reads) or
`.sql` (plain SQL, `db-backup --format plain`, for other tools). Its kind is in its name, so it
can never be lost: `manual` (db-backup), `scheduled` (taken by itself under `backups.auto`), and
the safety copies `pre-restore` and `pre-teardown` that db-restore and teardown take before they
change anything; an archive named without a kind (made before kinds existed) is `manual`.

Beside each archive a small record, `<archive>.json` (written before the archive gets its name),
says what it holds: the schema revision, the stamp, the rows of every table (counted in the very
snapshot pg_dump read, so they are the archive's own), the client version that wrote it, and,
once `db-backup --verify-restore` restored it into a scratch database, that verification.

Each archive carries its environment's stamp, and a restore refuses an archive of another
environment unless that environment is named.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import credentials
from services.database import connection, roles, schema, stamp
from services.errors import ClusterError, EnvironmentMismatchError, PiperError, UsageError
from services.files import private_dir, read_regular_file, write_atomic, write_new
from services.postgres import binaries, clients, servers
from services.profiles import Profile
from services.project import Project
from services.rotation import plan_grouped_rotation

KINDS = ("manual", "scheduled", "pre-restore", "pre-teardown", "pre-downgrade")
#: The copies a command takes of what it is about to replace or delete: never what `--latest` means.
SAFETY_KINDS = ("pre-restore", "pre-teardown", "pre-downgrade")
_STAMP = "%Y%m%dT%H%M%S%fZ"
_ARCHIVE = re.compile(r"(?P<env>[a-z][a-z0-9_]*)-(?P<db>[a-z_][a-z0-9_]*)-(?P<stamp>\d{8}T\d{12}Z)"
                      r"(?:-(?P<kind>manual|scheduled|pre-restore|pre-teardown|pre-downgrade))?\.(?P<ext>dump|sql)")
#: A record is a few hundred bytes; more is not one of ours.
_MAX_RECORD = 1 << 20
#: The psql releases that read the `\restrict` line recent pg_dump releases write at the top of plain SQL.
PLAIN_READERS = "psql 13.22, 14.19, 15.14, 16.10, 17.6, 18 or newer"


@dataclass(frozen=True)
class DatabaseBackup:
    """One archive of backups/<env>/, and what its record says (empty when it has none)."""

    path: Path
    taken: datetime
    size: int
    kind: str = "manual"
    plain: bool = False
    record: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def safety(self) -> bool:
        return self.kind in SAFETY_KINDS

    @property
    def revision(self) -> str | None:
        return self.record.get("revision")

    @property
    def verified(self) -> dict[str, Any] | None:
        """The last `--verify-restore` of this archive ({"at", "ok", "detail"}), or None."""
        return self.record.get("verified")

    @property
    def readers(self) -> str:
        """Which client tools can read the archive, in words."""
        if self.plain:
            return PLAIN_READERS
        version = self.record.get("client_version")
        return f"pg_restore {version} or newer" if version else "pg_restore of the server's version or newer"


@dataclass(frozen=True)
class VerifyResult:
    """What `db-backup --verify-restore` found: the rows of each table, in the archive and once restored."""

    backup: DatabaseBackup
    expected: dict[str, int]
    found: dict[str, int]
    stamp_expected: str | None
    stamp_found: str | None
    seconds: float
    dropped_leftover: bool = False

    @property
    def ok(self) -> bool:
        return self.expected == self.found and self.stamp_expected == self.stamp_found

    @property
    def differences(self) -> list[str]:
        out = [f"{t}: {self.expected.get(t, 'absent')} in the archive, {self.found.get(t, 'absent')} restored"
               for t in sorted(set(self.expected) | set(self.found)) if self.expected.get(t) != self.found.get(t)]
        if self.stamp_expected != self.stamp_found:
            out.append(f"stamp: {self.stamp_expected!r} in the archive, {self.stamp_found!r} restored")
        return out


def backup_dir(profile: Profile, project: Project) -> Path:
    """Return backups/<env>/, created with mode 0700 (parents too)."""
    return private_dir(project.root, "backups", profile.name)


def backup_database(profile: Profile, project: Project, server: servers.Server, *, kind: str = "manual",
                    plain: bool = False, progress: clients.ProgressCallback | None = None) -> DatabaseBackup:
    """Dump the environment's database (server running) to a new dated archive of that kind; return it.

    The rows of each table, the stamp and the revision are read in one snapshot that pg_dump then
    dumps, and written to the archive's record before the archive is given its name.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of backup {kind!r}")
    owner = credentials.target(profile, project, "owner", socket_dir=str(server.socket_dir))
    taken = datetime.now(UTC)
    name = f"{profile.name}-{profile.database.name}-{taken.strftime(_STAMP)}-{kind}.{'sql' if plain else 'dump'}"
    destination = backup_dir(profile, project) / name
    _sweep_orphan_records(destination.parent)
    record: dict[str, Any] = {"kind": kind, "taken": taken.isoformat(), "format": "plain" if plain else "custom",
                              "client_version": binaries.program_major_version(server.bin_dir / "pg_dump")
                              or "unknown"}
    record_path = _record_path(destination)
    with connection.connect(owner, autocommit=True) as conn:
        # The snapshot pg_dump reads: exported by this transaction, which stays open until it is done.
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL row_security = off")  # a count that policies filtered would be an error, not wrong
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        tables = _tables(conn)

        def write_record() -> None:
            # Counted after pg_dump (which took its locks first), in the snapshot it dumped: the archive's own rows.
            record.update(_facts(conn, tables))
            write_new(record_path, json.dumps(record, indent=1), mode=0o600)

        clients.dump_database(server, profile.database.name, owner.user, owner.password, destination, plain=plain,
                              snapshot=snapshot, tables_total=len(tables), progress=progress,
                              before_publish=write_record)
        conn.execute("ROLLBACK")
    if not destination.exists():  # publishing failed after the record was written
        record_path.unlink(missing_ok=True)
    return DatabaseBackup(destination, taken, destination.stat().st_size, kind, plain, record)


def list_backups(profile: Profile, project: Project) -> list[DatabaseBackup]:
    """Return the environment's archives, newest first (other files are ignored)."""
    folder = project.root / "backups" / profile.name
    found = []
    for path, match in _archives(folder, profile):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        found.append(DatabaseBackup(path, _taken(match), size, match["kind"] or "manual", match["ext"] == "sql",
                                    _read_record(path)))
    return sorted(found, key=lambda b: b.taken, reverse=True)


def newest_taken(profile: Profile, project: Project) -> datetime | None:
    """Return when the newest archive of the environment was taken, from the names alone (cheap)."""
    return max((_taken(match) for _, match in _archives(project.root / "backups" / profile.name, profile)),
               default=None)


def latest_restorable(backups: list[DatabaseBackup]) -> DatabaseBackup | None:
    """Return what `db-restore --latest` means: the newest archive db-restore reads that is no safety copy."""
    return next((b for b in backups if not b.safety and not b.plain), None)


def take_backup(profile: Profile, project: Project, server: servers.Server, *, kind: str,
                plain: bool = False, progress: clients.ProgressCallback | None = None
                ) -> tuple[DatabaseBackup, list[DatabaseBackup]]:
    """Take a backup of that kind, then rotate the old archives (never the one just taken); return both."""
    taken = backup_database(profile, project, server, kind=kind, plain=plain, progress=progress)
    return taken, rotate_backups(profile, project, protect=(taken.path,))


def rotate_backups(profile: Profile, project: Project, *, dry_run: bool = False,
                   protect: tuple[Path, ...] = ()) -> list[DatabaseBackup]:
    """Delete the archives the profile's rotation policy does not keep; return them.

    Manual and scheduled archives, safety copies, and plain-SQL files are rotated each as a group
    of their own by the same policy (services/rotation.py): restores never push out what was
    backed up on purpose, and the newest of each group is always kept, as is what `protect` names.
    """
    def group(backup: DatabaseBackup) -> str:
        return "plain" if backup.plain else "safety" if backup.safety else "regular"

    backups = list_backups(profile, project)
    plan = plan_grouped_rotation([(b.taken, group(b), b) for b in backups], profile.backups)
    dropped = [b for b in plan.drop if b.path not in protect]
    if not dry_run:
        for backup in dropped:
            backup.path.unlink(missing_ok=True)
            _record_path(backup.path).unlink(missing_ok=True)
    return dropped


def archive_environment(server: servers.Server, archive: Path) -> str | None:
    """Return the environment an archive is stamped with (its piper_metadata row), or None."""
    for line in clients.archive_table(server, archive, "piper_metadata").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0] == "environment":
            return fields[1]
    return None


def check_restorable(profile: Profile, server: servers.Server, archive: Path, from_env: str | None) -> str:
    """Return the environment an archive is stamped for, after checking db-restore may restore it here."""
    if not archive.is_file():
        raise UsageError(f"{archive} does not exist; see `invoke db-backup --list --env {profile.name}`")
    if archive.suffix == ".sql":
        raise UsageError(f"{archive.name} is a plain-SQL file for other tools; db-restore reads the .dump archives "
                         f"(restore it by hand with psql, see docs/BACKUPS.md)")
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
    return stamped


def restore_backup(profile: Profile, project: Project, server: servers.Server, archive: Path,
                   *, from_env: str | None = None, progress: clients.ProgressCallback | None = None) -> DatabaseBackup:
    """Restore an archive over the environment's database after backing the database up (a pre-restore copy).

    The archive must be stamped for this environment, or for the one named by from_env (the
    restored database is then stamped for this one). The restore runs in one transaction: on any
    error the database is left as it was. Return the backup taken first.
    """
    stamped = check_restorable(profile, server, archive, from_env)
    before = backup_database(profile, project, server, kind="pre-restore", progress=progress)
    owner = credentials.target(profile, project, "owner", socket_dir=str(server.socket_dir))
    # The restore, its new stamp and the application role's limits commit together, or not at all.
    then = [stamp.write_stamp_sql(profile.name)] if stamped != profile.name else []
    then += roles.application_role_sql(roles.ROLE_NAMES["app"])
    clients.restore_database(server, profile.database.name, owner.user, owner.password, archive, then=then,
                             tables_total=len(clients.archive_tables(server, archive)) if progress else 0,
                             progress=progress)
    return before


def scratch_name(profile: Profile) -> str:
    """Return the name of the scratch database `--verify-restore` restores into (dropped after, or by the next run)."""
    suffix = "_verify_restore"
    # Cut the name, never the suffix: a 63-character database name would otherwise be its own "scratch".
    return profile.database.name[:63 - len(suffix)] + suffix


def drop_scratch(profile: Profile, project: Project, server: servers.Server) -> bool:
    """Drop the scratch database a killed `--verify-restore` left, if there is one; return whether there was."""
    from psycopg import sql

    admin = credentials.target(profile, project, "admin", dbname="postgres", socket_dir=str(server.socket_dir))
    with connection.connect(admin, autocommit=True) as conn:
        if not roles.database_exists(conn, scratch_name(profile)):
            return False
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch_name(profile))))
    return True


def verify_restore(profile: Profile, project: Project, server: servers.Server, backup: DatabaseBackup, *,
                   progress: clients.ProgressCallback | None = None) -> VerifyResult:
    """Restore an archive into a scratch database on the same server, compare rows per table and the stamp,
    drop the scratch database, and record the outcome beside the archive; return it."""
    from psycopg import sql

    if backup.plain:
        raise UsageError(f"{backup.path.name} is plain SQL; --verify-restore checks the .dump archives "
                         "db-restore reads")
    started = time.monotonic()
    leftover = drop_scratch(profile, project, server)
    expected = backup.record.get("tables")
    stamp_expected = backup.record.get("stamp")
    if not isinstance(expected, dict):  # an archive with no record: count its data instead
        expected = clients.archive_row_counts(server, backup.path)
        stamp_expected = archive_environment(server, backup.path)
    admin = credentials.target(profile, project, "admin", dbname="postgres", socket_dir=str(server.socket_dir))
    owner = credentials.target(profile, project, "owner", dbname=scratch_name(profile),
                               socket_dir=str(server.socket_dir))
    scratch = sql.Identifier(scratch_name(profile))
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
            scratch, sql.Identifier(owner.user)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(scratch))
    try:
        clients.restore_database(server, scratch_name(profile), owner.user, owner.password, backup.path,
                                 tables_total=len(expected), progress=progress)
        with connection.connect(owner) as conn:
            conn.execute("SET row_security = off")
            found_facts = _facts(conn)
    finally:
        drop_scratch(profile, project, server)
    result = VerifyResult(backup, {k: int(v) for k, v in expected.items()}, found_facts["tables"], stamp_expected,
                          found_facts["stamp"], time.monotonic() - started, leftover)
    record = {**backup.record, "verified": {"at": datetime.now(UTC).isoformat(), "ok": result.ok,
                                            "detail": "; ".join(result.differences)}}
    if not backup.record:
        record.update(kind=backup.kind, taken=backup.taken.isoformat(), format="custom", tables=expected,
                      stamp=stamp_expected, revision=found_facts["revision"])
    write_atomic(_record_path(backup.path), json.dumps(record, indent=1), mode=0o600)
    return result


def _tables(conn) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Return the (schema, table) of every table of the database, from the catalog alone (no table is locked)."""
    return conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1, 2").fetchall()


def _facts(conn, tables: list[tuple[str, str]] | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Return the rows of every table of the database (schema.table), its stamp and its schema revision."""
    from psycopg import sql

    counts = {}
    for schema_name, table in _tables(conn) if tables is None else tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema_name), sql.Identifier(table))
        counts[f"{schema_name}.{table}"] = conn.execute(query).fetchone()[0]
    return {"tables": counts, "stamp": stamp.read_stamp(conn), "revision": schema.current_revision(conn)}


def _archives(folder: Path, profile: Profile):  # type: ignore[no-untyped-def]
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        match = _ARCHIVE.fullmatch(name)
        if match and match["env"] == profile.name:
            yield folder / name, match


def _taken(match: re.Match[str]) -> datetime:
    return datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)


def _record_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".json")


def _read_record(archive: Path) -> dict[str, Any]:
    """Return an archive's record, or {} when it has none or it cannot be read (the archive is what counts)."""
    try:
        found = json.loads(read_regular_file(_record_path(archive), _MAX_RECORD, what="backup record"))
    except (OSError, ValueError, PiperError):
        return {}
    return found if isinstance(found, dict) else {}


def _sweep_orphan_records(folder: Path) -> None:
    """Remove the records whose archive never got its name (a run killed between the two)."""
    for name in os.listdir(folder):
        if name.endswith(".json") and _ARCHIVE.fullmatch(name[:-5]) and not (folder / name[:-5]).exists():
            (folder / name).unlink(missing_ok=True)
