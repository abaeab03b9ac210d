"""Users of an environment: create one, find one, delete one (after exporting them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from services import identifiers
from services.database import events
from services.errors import ConfirmationRequired, UsageError
from services.files import private_dir, write_new
from services.profiles import Profile
from services.project import Project
from services.users import documents, exports, store

if TYPE_CHECKING:
    import uuid


@dataclass(frozen=True)
class UserResult:
    """A user and whether this call created it."""

    id: uuid.UUID
    username: str
    email: str
    created: bool


def create_user(profile: Profile, project: Project, username: str, email: str | None = None,
                display_name: str | None = None) -> UserResult:
    """Create the user, or return the existing one unchanged (idempotent).

    An existing user with another email than the one asked for is an error, not a silent success.
    Concurrent calls for the same user both succeed; one of them creates it.
    """
    from psycopg import sql

    identifiers.validate_username(username)
    if email is not None:
        identifiers.validate_email(email)
    table = sql.Identifier(store.table_for(profile))
    with store.user_data_connection(profile, project, acting_user=username) as conn:
        row = conn.execute(sql.SQL("SELECT id, username, email FROM {} WHERE username = %s").format(table), (username,)).fetchone()
        if row is None:
            address = email or f"{username}@example.invalid"
            # The same user made meanwhile by a concurrent call holds this email too: that is no conflict.
            if conn.execute(sql.SQL("SELECT 1 FROM {} WHERE email = %s AND username <> %s").format(table),
                            (address, username)).fetchone():
                raise UsageError(f"email {address!r} already belongs to another user in {profile.name}; use another email")
            # Any unique key taken meanwhile (this username by a concurrent call of ours, or the email
            # by another user) makes the insert do nothing; the row that holds the username says which.
            created = conn.execute(
                sql.SQL("INSERT INTO {} (username, email, display_name) VALUES (%s, %s, %s) "
                        "ON CONFLICT DO NOTHING RETURNING id").format(table),
                (username, address, display_name),
            ).fetchone()
            if created is not None:
                return UserResult(created[0], username, address, created=True)
            row = conn.execute(sql.SQL("SELECT id, username, email FROM {} WHERE username = %s").format(table),
                               (username,)).fetchone()
            if row is None:
                raise UsageError(f"email {address!r} was just taken by another user in {profile.name}; "
                                 "use another email")
    assert row is not None
    if email and row[2] != email:
        raise UsageError(
            f"user {username!r} already exists in {profile.name} with another email; "
            "choose another username or leave --email out"
        )
    return UserResult(row[0], row[1], row[2], created=False)


def find_user_id(profile: Profile, project: Project, username: str) -> uuid.UUID:
    """Return the user's id; raise UserNotFound listing the users that exist."""
    identifiers.validate_username(username)
    with store.user_data_connection(profile, project, acting_user=username) as conn:
        return store.user_row(conn, profile, username, "id")["id"]


def deleted_users_folder(profile: Profile, project: Project) -> Path:
    """Return the git-ignored folder a deleted user's export goes to: private/deleted-users/<env>/."""
    return project.root / "private" / "deleted-users" / profile.name


def delete_user(profile: Profile, project: Project, username: str, *, confirmed: bool) -> tuple[Path, str]:
    """Export the user to the git-ignored private folder, then delete them; return (export path, checksum).

    The export is written (atomically, 0600) before anything is deleted, so an import of that file
    undoes the deletion. The record of the deletion keeps the user's id and a hash of the name only.
    """
    from psycopg import sql

    if not confirmed:
        raise ConfirmationRequired(f"deleting {username!r} from {profile.name} removes all their data; confirm, or pass --yes")
    folder = private_dir(project.root, *deleted_users_folder(profile, project).relative_to(project.root).parts)
    taken = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{username}-{taken}.json"
    with store.user_data_connection(profile, project, acting_user=username) as conn:
        # One transaction, the row locked from export to delete: nothing written in between is lost.
        document, checksum = exports.export_in_transaction(conn, profile, username, None, lock=True)
        write_new(path, document, mode=0o600)  # on disk before the delete commits
        user_id = store.user_row(conn, profile, username, "id")["id"]
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(store.table_for(profile))), (user_id,))
        conn.execute("UPDATE user_data_events SET username = NULL, username_sha256 = %s WHERE user_id = %s",
                     (documents.sha256_hex(username.encode()), user_id))
        events.record_event(conn, profile.name, "delete", user_id=user_id, username=None, checksum=checksum,
                            username_sha256=documents.sha256_hex(username.encode()))
    return path, checksum
