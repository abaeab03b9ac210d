"""Migrate a user's personal data file into their preferences (ADR-040), in one transaction, recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services import identifiers
from services.database import events
from services.errors import ConfirmationRequired, UsageError
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
    #: False when the file was a bare object of preferences, which names no user (see documents.py).
    names_user: bool = True

    @property
    def changed(self) -> bool:
        return any(self.changes.values())


def data_file_path(profile: Profile, project: Project, data_file: Path | None) -> Path:
    """Return the data file to migrate: data_file, else the profile's `personal_data.data_file`; refuse neither."""
    if data_file is not None:
        return data_file
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
    return path


def load_data_file(profile: Profile, project: Project, username: str,
                   data_file: Path | None) -> documents.PersonalDataFile:
    """Read and validate the data file to migrate into username (data_file, else the profile's)."""
    identifiers.validate_username(username)
    return documents.load_personal_data(data_file_path(profile, project, data_file), username)


def migrate_personal_data(profile: Profile, project: Project, username: str,
                          data_file: Path | documents.PersonalDataFile | None, *, dry_run: bool = False,
                          confirmed: bool = False) -> MigrationResult:
    """Deep-merge a personal-data file into the user's preferences, in one transaction.

    Without data_file the profile's `personal_data.data_file` is used; with neither, refuse. A file
    already applied to this user (same SHA-256) is not applied again, so re-running setup never
    overwrites what the user has changed since. data_file may be one load_data_file already read.

    A bare object of preferences names no user: it is migrated into username only when the caller
    says the user confirmed that (confirmed=True); otherwise ConfirmationRequired, and nothing is
    written. A dry run or a file already applied needs no confirmation: neither writes anything.
    """
    from psycopg.types.json import Jsonb

    identifiers.validate_username(username)
    if isinstance(data_file, documents.PersonalDataFile):
        document = data_file
        if document.username != username:
            raise UsageError(f"{document.path} was read for user {document.username!r}, not {username!r}; "
                             f"read it again for {username!r}")
    else:
        document = documents.load_personal_data(data_file_path(profile, project, data_file), username)
    path = document.path
    source = _display_path(path, project)
    table = store.table_for(profile)
    with store.user_data_connection(profile, project, acting_user=username) as conn:
        columns = "id, preferences, display_name" + (", learning_data" if table == "alpha_users" else "")
        row = store.user_row(conn, profile, username, columns, lock=not dry_run)
        done = conn.execute(
            "SELECT occurred_at FROM user_data_events WHERE event = 'migrate' AND user_id = %s AND checksum = %s "
            "ORDER BY occurred_at DESC LIMIT 1", (row["id"], document.sha256)).fetchone()
        if done is not None:
            return MigrationResult(row["id"], username, source, document.sha256, documents.no_changes(), False, done[0],
                                   names_user=document.names_user)
        preferences = documents.deep_merge(row["preferences"], document.preferences)
        changes = documents.changed_keys(row["preferences"], preferences)
        learning = row.get("learning_data")
        if document.learning_data is not None and table == "alpha_users":
            learning = documents.deep_merge(learning or {}, document.learning_data)
        display_name = document.display_name or row["display_name"]
        if dry_run:
            return MigrationResult(row["id"], username, source, document.sha256, changes, False,
                                   names_user=document.names_user)
        if not document.names_user and not confirmed:
            raise ConfirmationRequired(f"{source} is a bare object of preferences and names no user; "
                                       f"confirm that it is {username}'s (pass --yes) to migrate it")
        from psycopg import sql

        sets = [sql.SQL("preferences = %s"), sql.SQL("display_name = %s"), sql.SQL("updated_at = now()")]
        values: list[Any] = [Jsonb(preferences), display_name]
        if table == "alpha_users":
            sets.append(sql.SQL("learning_data = %s"))
            values.append(Jsonb(learning) if learning is not None else None)
        conn.execute(sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), sql.SQL(", ").join(sets)),
                     (*values, row["id"]))
        events.record_event(conn, profile.name, "migrate", user_id=row["id"], username=username, source=source,
                            checksum=document.sha256,
                            details={"changes": changes, **({} if document.names_user else {"names_user": False})})
    return MigrationResult(row["id"], username, source, document.sha256, changes, True, names_user=document.names_user)


def _display_path(path: Path, project: Project) -> str:
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(project.root))
    except ValueError:
        return resolved.name

