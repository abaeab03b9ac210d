"""Migrate a user's personal data file into their preferences (ADR-040), in one transaction, recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services import identifiers
from services.database import events
from services.errors import UsageError
from services.profiles import Profile
from services.project import Project
from services.users import documents, store

if TYPE_CHECKING:
    import uuid


@dataclass(frozen=True)
class MigrationResult:
    """What migrate_personal_data did (or, with dry_run, would do)."""

    user_id: uuid.UUID
    username: str
    source: str | None
    checksum: str | None
    changes: dict[str, list[str]]
    applied: bool
    already_applied_at: datetime | None = None

    @property
    def changed(self) -> bool:
        return any(self.changes.values())


def migrate_personal_data(profile: Profile, project: Project, username: str, data_file: Path | None, *,
                          dry_run: bool = False) -> MigrationResult:
    """Deep-merge a personal-data file into the user's preferences, in one transaction.

    Without data_file the profile's `personal_data.data_file` is used; with neither, refuse. A file
    already applied to this user (same SHA-256) is not applied again, so re-running setup never
    overwrites what the user has changed since.
    """
    from psycopg.types.json import Jsonb

    identifiers.validate_username(username)
    path = data_file
    if path is None:
        if not profile.personal_data.data_file:
            raise UsageError(
                f"no data file given and environment {profile.name!r} names none "
                f"(personal_data.data_file in {profile.source}); pass --data-file FILE or --skip-migration"
            )
        path = project.root / profile.personal_data.data_file
        if not path.exists():
            raise UsageError(
                f"{path} (personal_data.data_file of {profile.name}) does not exist; put the personal-data file "
                f"there (shape in docs/USER_DATA.md), or pass --data-file FILE"
            )
    document = documents.load_personal_data(path, username)
    source = _display_path(path, project)
    table = store.table_for(profile)
    with store.user_data_connection(profile, project, acting_user=username) as conn:
        columns = "id, preferences, display_name" + (", learning_data" if table == "alpha_users" else "")
        row = store.user_row(conn, profile, username, columns, lock=not dry_run)
        done = conn.execute(
            "SELECT occurred_at FROM user_data_events WHERE event = 'migrate' AND user_id = %s AND checksum = %s "
            "ORDER BY occurred_at DESC LIMIT 1", (row["id"], document.sha256)).fetchone()
        if done is not None:
            return MigrationResult(row["id"], username, source, document.sha256, documents.no_changes(), False, done[0])
        preferences = documents.deep_merge(row["preferences"], document.preferences)
        changes = documents.changed_keys(row["preferences"], preferences)
        learning = row.get("learning_data")
        if document.learning_data is not None and table == "alpha_users":
            learning = documents.deep_merge(learning or {}, document.learning_data)
        display_name = document.display_name or row["display_name"]
        if dry_run:
            return MigrationResult(row["id"], username, source, document.sha256, changes, False)
        from psycopg import sql

        sets = [sql.SQL("preferences = %s"), sql.SQL("display_name = %s"), sql.SQL("updated_at = now()")]
        values: list[Any] = [Jsonb(preferences), display_name]
        if table == "alpha_users":
            sets.append(sql.SQL("learning_data = %s"))
            values.append(Jsonb(learning) if learning is not None else None)
        conn.execute(sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), sql.SQL(", ").join(sets)),
                     (*values, row["id"]))
        events.record_event(conn, profile.name, "migrate", user_id=row["id"], username=username, source=source,
                            checksum=document.sha256, details={"changes": changes})
    return MigrationResult(row["id"], username, source, document.sha256, changes, True)


def _display_path(path: Path, project: Project) -> str:
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(project.root))
    except ValueError:
        return resolved.name

