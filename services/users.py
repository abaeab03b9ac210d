"""Users of an environment and their personal data: create, migrate, export, import, delete.

Local environments keep users in `alpha_users`; the hosted production environment in `users`
(ADR-040 "Migration Path"). Every write runs in one transaction together with its record in
`user_data_events`, so a change and its record exist together or not at all.

The personal-data paths use the driver directly rather than the ORM: a user's preferences may be
megabytes of JSON, and these paths stay within a small factor of psql fetching the same row.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from services import user_data
from services.database import connection
from services.errors import PiperError, UsageError
from services.files import write_new
from services.profiles import Profile
from services.project import Project

if TYPE_CHECKING:
    import uuid

    import psycopg

log = logging.getLogger(__name__)

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,62}$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")

#: Profile fields carried by an export, per table. password_hash never leaves the database.
_FIELDS = {
    "alpha_users": ("username", "email", "display_name", "is_active", "is_verified", "alpha_wave", "created_at", "notes"),
    "users": ("username", "email", "display_name", "created_at"),
}
ImportMode = Literal["refuse", "merge", "replace"]


class UserNotFound(UsageError):
    """No such user in the environment; the message lists the users that exist."""


class ImportConflict(PiperError):
    """The user exists with other data and neither --merge nor --replace was chosen."""


@dataclass(frozen=True)
class UserResult:
    """A user and whether this call created it."""

    id: uuid.UUID
    username: str
    email: str
    created: bool


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


@dataclass(frozen=True)
class ImportPlan:
    """What an import will do; `apply_import` carries it out if nothing changed meanwhile."""

    environment: str
    table: str
    username: str
    email: str
    action: Literal["create", "unchanged", "conflict", "merge", "replace"]
    document: user_data.ExportDocument
    preferences: dict[str, Any]
    learning_data: Any
    changes: dict[str, list[str]]
    existing_version: datetime | None = None
    fields_not_carried: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    user_id: uuid.UUID
    action: str
    invitation_file: Path | None = None


def table_for(profile: Profile) -> str:
    """Return the table that holds the environment's users."""
    return "users" if profile.hosted else "alpha_users"


def validate_username(username: str) -> str:
    """Return the username when valid; raise UsageError naming the rule otherwise."""
    if not _USERNAME.match(username):
        raise UsageError(
            f"username {username!r} is not valid; use 2-63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return username


def validate_email(email: str) -> str:
    """Return the email when it looks like an address; raise UsageError otherwise."""
    if len(email) > 254 or not _EMAIL.match(email):
        raise UsageError(f"email {email!r} is not a valid address; use the form name@example.com")
    return email


#: The session setting that row-level security keys on (migration 0003).
ACTING_USER_SETTING = "piper.acting_user"


@contextmanager
def user_data_connection(profile: Profile, project: Project, *, acting_user: str | None = None,
                         role: connection.Role = "owner") -> Iterator[psycopg.Connection]:
    """Yield a connection inside one transaction, after checking the environment stamp.

    The acting user is set for the transaction (`SET LOCAL`): as the application role, row-level
    security then shows and changes only that user's row, and nothing without one. Admin tasks
    (create, migrate, export, import, delete) act as the owner role, which RLS does not restrict;
    they still name the user they act for. Hosted production's roles come from its two URLs.
    It commits when the block ends normally and rolls back when it raises.
    """
    from services import stamp

    where = connection.target(profile, project, role)
    with connection.connect(where) as conn:
        stamp.check_stamp(conn, profile.name, where.display())
        with conn.transaction():
            if acting_user is not None:
                conn.execute("SELECT set_config(%s, %s, true)", (ACTING_USER_SETTING, acting_user))
            yield conn


def list_usernames(conn: psycopg.Connection, table: str, limit: int = 50) -> list[str]:
    """Return up to `limit` usernames of the table, sorted."""
    from psycopg import sql

    query = sql.SQL("SELECT username FROM {} ORDER BY username LIMIT %s").format(sql.Identifier(table))
    return [row[0] for row in conn.execute(query, (limit,))]


def create_user(profile: Profile, project: Project, username: str, email: str | None = None,
                display_name: str | None = None) -> UserResult:
    """Create the user, or return the existing one unchanged (idempotent).

    An existing user with another email than the one asked for is an error, not a silent success.
    Concurrent calls for the same user both succeed; one of them creates it.
    """
    import psycopg
    from psycopg import sql

    validate_username(username)
    if email is not None:
        validate_email(email)
    table = sql.Identifier(table_for(profile))
    with user_data_connection(profile, project, acting_user=username) as conn:
        row = conn.execute(sql.SQL("SELECT id, username, email FROM {} WHERE username = %s").format(table), (username,)).fetchone()
        if row is None:
            address = email or f"{username}@example.invalid"
            if conn.execute(sql.SQL("SELECT 1 FROM {} WHERE email = %s").format(table), (address,)).fetchone():
                raise UsageError(f"email {address!r} already belongs to another user in {profile.name}; use another email")
            try:
                created = conn.execute(
                    sql.SQL("INSERT INTO {} (username, email, display_name) VALUES (%s, %s, %s) "
                            "ON CONFLICT (username) DO NOTHING RETURNING id").format(table),
                    (username, address, display_name),
                ).fetchone()
            except psycopg.errors.UniqueViolation:
                raise UsageError(f"email {address!r} was just taken by another user in {profile.name}; "
                                 "use another email") from None
            if created is not None:
                return UserResult(created[0], username, address, created=True)
            row = conn.execute(sql.SQL("SELECT id, username, email FROM {} WHERE username = %s").format(table), (username,)).fetchone()
    assert row is not None
    if email and row[2] != email:
        raise UsageError(
            f"user {username!r} already exists in {profile.name} with another email; "
            "choose another username or leave --email out"
        )
    return UserResult(row[0], row[1], row[2], created=False)


def find_user_id(profile: Profile, project: Project, username: str) -> uuid.UUID:
    """Return the user's id; raise UserNotFound listing the users that exist."""
    validate_username(username)
    with user_data_connection(profile, project, acting_user=username) as conn:
        return _user_row(conn, profile, username, "id")["id"]


def migrate_personal_data(profile: Profile, project: Project, username: str, data_file: Path | None, *,
                          dry_run: bool = False) -> MigrationResult:
    """Deep-merge a personal-data file into the user's preferences, in one transaction.

    Without data_file the profile's `personal_data.data_file` is used; with neither, refuse. A file
    already applied to this user (same SHA-256) is not applied again, so re-running setup never
    overwrites what the user has changed since.
    """
    from psycopg.types.json import Jsonb

    validate_username(username)
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
    document = user_data.load_personal_data(path, username)
    source = _display_path(path, project)
    table = table_for(profile)
    with user_data_connection(profile, project, acting_user=username) as conn:
        columns = "id, preferences, display_name" + (", learning_data" if table == "alpha_users" else "")
        row = _user_row(conn, profile, username, columns, lock=not dry_run)
        done = conn.execute(
            "SELECT occurred_at FROM user_data_events WHERE event = 'migrate' AND user_id = %s AND checksum = %s "
            "ORDER BY occurred_at DESC LIMIT 1", (row["id"], document.sha256)).fetchone()
        if done is not None:
            return MigrationResult(row["id"], username, source, document.sha256, _no_changes(), False, done[0])
        preferences = user_data.deep_merge(row["preferences"], document.preferences)
        changes = user_data.changed_keys(row["preferences"], preferences)
        learning = row.get("learning_data")
        if document.learning_data is not None and table == "alpha_users":
            learning = user_data.deep_merge(learning or {}, document.learning_data)
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
        record_event(conn, profile, "migrate", user_id=row["id"], username=username, source=source,
                     checksum=document.sha256, details={"changes": changes})
    return MigrationResult(row["id"], username, source, document.sha256, changes, True)


def export_user(profile: Profile, project: Project, username: str, keys: list[str] | None = None, *,
                into: Path) -> tuple[int, str]:
    """Write one user's export document into the file `into` and record the export; return (size, checksum).

    `into` is an empty file the caller made (and later publishes or copies); the export is
    recorded only once the document is complete in it. PostgreSQL writes the payload's JSON
    itself, so megabytes of preferences are never parsed or serialised again in Python. A local
    environment's export runs through the server's own psql (see _export_with_psql); a hosted
    one, and any export psql cannot finish cleanly, through the driver, which also words every
    refusal.
    """
    validate_username(username)
    if not profile.hosted:
        exported = _export_with_psql(profile, project, username, keys, into)
        if exported is not None:
            return exported
    with user_data_connection(profile, project, acting_user=username) as conn:
        document, checksum = _export(conn, profile, username, keys)
        with open(into, "wb") as handle:  # on disk before the commit: no record of an export that was not written
            handle.write(document)
            handle.flush()
            os.fsync(handle.fileno())
    return len(document), checksum


def _export(conn: psycopg.Connection, profile: Profile, username: str, keys: list[str] | None,
            *, lock: bool = False) -> tuple[bytes, str]:
    """Build and record the export inside the caller's transaction.

    The row is locked (FOR SHARE, or FOR UPDATE with lock=True) until the transaction ends: nobody
    changes or deletes the user between the check, the payload and the record.
    """
    from psycopg.adapt import Loader

    class RawText(Loader):
        def load(self, data: Any) -> bytes:  # the JSON text's UTF-8 bytes, never decoded and encoded again
            return bytes(data)

    table = table_for(profile)
    user_id = _user_row(conn, profile, username, "id", lock=lock or "share")["id"]
    parameters = _export_parameters(username, keys)
    check = conn.execute(user_data.render_sql(user_data.export_check_sql(table)), parameters).fetchone()
    assert check is not None  # the row was found (and locked) by _user_row in this transaction
    _, revision, _, has_keys = check
    if not has_keys:
        present = [k for (k,) in conn.execute(f"SELECT jsonb_object_keys(preferences) FROM {table} WHERE id = %s",
                                              (user_id,))]
        missing = next((k for k in keys or [] if k not in present), "?")
        raise UsageError(f"user {username!r} has no preference key {missing!r}; keys: {', '.join(sorted(present))}")
    with conn.cursor() as cur:
        cur.adapters.register_loader("text", RawText)
        payload = cur.execute(user_data.render_sql(_payload_sql(profile)), parameters).fetchone()
    assert payload is not None  # the row was found by _user_row in this transaction
    document, checksum = user_data.build_export(environment=profile.name, database=profile.database.name,
                                                schema_revision=revision, payload=payload)
    record_event(conn, profile, "export", user_id=user_id, username=username, checksum=checksum,
                 details={"keys": keys, "bytes": len(document)})
    return document, checksum


def _payload_sql(profile: Profile) -> str:
    table = table_for(profile)
    return user_data.payload_sql(table, _FIELDS[table], with_learning_data=table == "alpha_users")


def _export_parameters(username: str, keys: list[str] | None) -> dict[str, str]:
    from services import stamp

    return {"username": username, "keys": user_data.keys_parameter(keys), "stamp_key": stamp.STAMP_KEY}


def _export_with_psql(profile: Profile, project: Project, username: str, keys: list[str] | None,
                      into: Path) -> tuple[int, str] | None:
    """Export through the server's own psql, in one transaction; None when the driver must do it.

    Starting Python's PostgreSQL driver costs more than psql's whole export of 10 MB, so a local
    export, the common case, runs the driver path's own SQL (export_check_sql, payload_sql,
    _EVENT_SQL) through psql instead, and psql writes the document straight into `into`. Anything
    but a clean success (no such user, a missing key, another environment's stamp, no psql, any
    error) rolls back and returns None; the driver path then exports or says what is wrong.
    """
    from services.postgres import psql_sessions, servers

    try:
        server = servers.locate(profile, project)
        owner = connection.target(profile, project, "owner")
    except PiperError:
        return None
    if not (server.bin_dir / "psql").exists():
        return None
    variables = {**_export_parameters(username, keys), "environment": profile.name, "event": "export",
                 "actor": _actor(), "username_sha256": "", "source_environment": "", "source": ""}
    table = table_for(profile)
    try:
        with psql_sessions.psql_session(server, owner.dbname, owner.user, owner.password, variables=variables,
                                        options=f"-c {ACTING_USER_SETTING}={username}") as psql:
            psql.send("BEGIN ISOLATION LEVEL REPEATABLE READ;\n")  # one snapshot for the check and the payload
            # As the driver path, the row is locked: nobody changes or deletes the user until the export is
            # recorded. (A change committed since the snapshot makes this fail; the driver path takes over.)
            check = psql.query_row(user_data.export_check_sql(table) + " FOR SHARE")
            if check is None or len(check) != 4 or check[0] != profile.name.encode() or not check[2] or check[3] != b"t":
                return None
            head = user_data.export_head(environment=profile.name, database=profile.database.name,
                                         schema_revision=check[1].decode() or None)
            psql.set("head", head.decode())
            if not psql.query_to_file(f"SELECT :'head', payload.* FROM ({_payload_sql(profile)}) AS payload", into):
                return None
            sealed = _seal_export(into, head)
            if sealed is None:
                return None
            psql.set("user_id", check[2].decode())
            psql.set("checksum", sealed[1])
            psql.set("details", json.dumps({"keys": keys, "bytes": sealed[0]}, ensure_ascii=False))
            psql.send(_EVENT_SQL + ";\nCOMMIT;\n")
            failure = psql.finish()
    except (OSError, ValueError) as exc:  # psql could not start or stopped half-way; a path it cannot take
        failure = str(exc)
    if failure is not None:
        log.debug("the export through psql did not finish (%s); exporting through the driver", failure)
        return None
    return sealed


def _seal_export(path: Path, head: bytes) -> tuple[int, str] | None:
    """Finish a document psql wrote (head, payload, newline): hash the payload, put the checksum in
    place of the newline, and flush it all to disk. Return (size, checksum), or None if the file is
    not what psql should have written (psql does not report a failed write, so its start and its
    end are checked). The file is read in pieces: megabytes of preferences never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size < len(head) + 3:
            return None
        handle.seek(size - 2)
        if handle.read(2) != b"}\n":
            return None
        handle.seek(0)
        if handle.read(len(head)) != head:
            return None
        # The disk writes what psql wrote while the payload is read back from memory and hashed.
        failed: list[OSError] = []
        flushing = threading.Thread(target=_fsync_into, args=(handle.fileno(), failed))
        flushing.start()
        try:
            buffer = memoryview(bytearray(1 << 20))
            remaining = size - 1 - len(head)
            while remaining:
                count = handle.readinto(buffer[:min(len(buffer), remaining)])
                if not count:
                    return None
                digest.update(buffer[:count])
                remaining -= count
        finally:
            flushing.join()
        if failed:
            raise failed[0]  # the disk refused what psql wrote (a later fsync might not say so again)
        checksum = digest.hexdigest()
        tail = user_data.export_tail(checksum)
        handle.seek(size - 1)
        handle.write(tail)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())  # all of it on disk before the export is recorded
    return size - 1 + len(tail), checksum


def _fsync_into(fd: int, failed: list[OSError]) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        failed.append(exc)


def plan_import(profile: Profile, project: Project, raw: bytes, origin: str, username: str, email: str | None,
                mode: ImportMode = "refuse") -> ImportPlan:
    """Verify an export document and work out what importing it would change; write nothing."""
    document = user_data.parse_export(raw, origin)
    validate_username(username)
    if document.user["username"] != username:
        raise user_data.UserDataError(
            f"{origin} holds user {document.user['username']!r}, not {username!r}; pass --username {document.user['username']}"
        )
    address = validate_email(email or document.user["email"])
    table = table_for(profile)
    not_carried = sorted(k for k in ("learning_data", "notes", "alpha_wave") if table == "users" and
                         (document.learning_data if k == "learning_data" else document.user.get(k)) is not None)
    with user_data_connection(profile, project, acting_user=username) as conn:
        from psycopg import sql

        extra = ", learning_data" if table == "alpha_users" else ""
        row = conn.execute(sql.SQL("SELECT id, email, display_name, preferences, updated_at" + extra +
                                   " FROM {} WHERE username = %s").format(sql.Identifier(table)), (username,)).fetchone()
        owner = conn.execute(sql.SQL("SELECT username FROM {} WHERE email = %s AND username <> %s").format(
            sql.Identifier(table)), (address, username)).fetchone()
    if owner is not None:
        raise UsageError(f"email {address!r} already belongs to user {owner[0]!r} in {profile.name}; pass another --email")
    incoming_learning = document.learning_data if table == "alpha_users" else None
    if row is None:
        return ImportPlan(profile.name, table, username, address, "create", document, document.preferences,
                          incoming_learning, user_data.changed_keys({}, document.preferences), None, not_carried)
    current_prefs, current_learning = row[3], (row[5] if table == "alpha_users" else None)
    # A partial export (--keys) speaks only of its keys: the user's other preferences stay.
    incoming = document.preferences if document.keys is None else {
        **{k: v for k, v in current_prefs.items() if k not in document.keys}, **document.preferences}
    same = (row[1] == address and current_prefs == incoming
            and (table == "users" or current_learning == incoming_learning)
            and (document.user.get("display_name") in (None, row[2])))
    if same:
        return ImportPlan(profile.name, table, username, address, "unchanged", document, current_prefs,
                          current_learning, user_data.changed_keys(current_prefs, current_prefs), row[4], not_carried)
    if mode == "merge":
        prefs = user_data.deep_merge(current_prefs, document.preferences)
        learning = user_data.deep_merge(current_learning, incoming_learning) if incoming_learning is not None else current_learning
    elif mode == "replace":
        prefs, learning = incoming, incoming_learning
    else:
        prefs, learning = current_prefs, current_learning
    action = mode if mode != "refuse" else "conflict"
    return ImportPlan(profile.name, table, username, address, action, document, prefs, learning,  # type: ignore[arg-type]
                      user_data.changed_keys(current_prefs, incoming if action == "conflict" else prefs),
                      row[4], not_carried)


def apply_import(profile: Profile, project: Project, plan: ImportPlan, *, outbox: Path | None = None) -> ImportResult:
    """Carry out an import plan in one transaction, with its record (and, into production, an invitation).

    Refuses when the user changed since the plan was made, so a confirmation always matches what is written.
    """
    if plan.action == "conflict":
        raise ImportConflict(
            f"user {plan.username!r} already exists in {plan.environment} with other data; "
            "pass --merge to merge the file into it, or --replace to overwrite it"
        )
    import psycopg

    try:
        user_id, pending = _apply(profile, project, plan)
    except psycopg.errors.UniqueViolation:
        raise ImportConflict(f"user {plan.username!r} or email {plan.email!r} was taken in {plan.environment} while the "
                             "import ran; run it again") from None
    if pending is None:
        return ImportResult(user_id, plan.action)
    from services import invitations

    # Written only once the user and the invitation's hash are committed: no email for a token that does not exist.
    return ImportResult(user_id, plan.action, invitations.write_invitation(project, pending, outbox))


def _apply(profile: Profile, project: Project, plan: ImportPlan) -> tuple[uuid.UUID, Any]:
    from psycopg import sql
    from psycopg.types.json import Jsonb

    table = sql.Identifier(plan.table)
    pending = None
    with user_data_connection(profile, project, acting_user=plan.username) as conn:
        row = conn.execute(sql.SQL("SELECT id, updated_at FROM {} WHERE username = %s FOR UPDATE").format(table),
                           (plan.username,)).fetchone()
        if (row[1] if row else None) != plan.existing_version:
            raise ImportConflict(f"user {plan.username!r} changed in {plan.environment} while the import was prepared; run it again")
        if plan.action == "unchanged":
            assert row is not None
            return row[0], None
        user = plan.document.user
        if plan.action == "create":
            names = ["username", "email", "display_name", "preferences"]
            values: list[Any] = [plan.username, plan.email, user.get("display_name"), _JsonText(plan.document.payload_json)]
            if plan.table == "alpha_users":
                names += ["is_active", "is_verified", "alpha_wave", "notes", "learning_data"]
                values += [bool(user.get("is_active", True)), bool(user.get("is_verified", False)), user.get("alpha_wave"),
                           user.get("notes"), Jsonb(plan.learning_data) if plan.learning_data is not None else None]
            placeholders = [sql.SQL("(%s::jsonb)->'preferences'") if isinstance(v, _JsonText) else sql.Placeholder()
                            for v in values]
            with conn.cursor() as cur:
                cur.adapters.register_dumper(_JsonText, _json_text_dumper())
                created = cur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
                    table, sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(placeholders)),
                    values).fetchone()
            assert created is not None
            user_id = created[0]
            if profile.hosted:
                from services import invitations

                pending = invitations.invite(conn, profile, user_id, plan.username, plan.email,
                                             display_name=user.get("display_name"))
        else:
            assert row is not None
            user_id = row[0]
            sets = [sql.SQL("email = %s"), sql.SQL("preferences = %s"), sql.SQL("updated_at = now()")]
            values = [plan.email, Jsonb(plan.preferences)]
            if user.get("display_name") is not None:
                sets.append(sql.SQL("display_name = %s"))
                values.append(user["display_name"])
            if plan.table == "alpha_users":
                sets.append(sql.SQL("learning_data = %s"))
                values.append(Jsonb(plan.learning_data) if plan.learning_data is not None else None)
            conn.execute(sql.SQL("UPDATE {} SET {} WHERE id = %s").format(table, sql.SQL(", ").join(sets)), (*values, user_id))
        record_event(conn, profile, "import", user_id=user_id, username=plan.username,
                     source_environment=plan.document.source_environment, checksum=plan.document.checksum,
                     details={"action": plan.action, "changes": plan.changes, "exported_at": plan.document.exported_at})
    return user_id, pending


def delete_user(profile: Profile, project: Project, username: str, *, confirmed: bool) -> tuple[Path, str]:
    """Export the user to the git-ignored private folder, then delete them; return (export path, checksum).

    The export is written (atomically, 0600) before anything is deleted, so an import of that file
    undoes the deletion. The record of the deletion keeps the user's id and a hash of the name only.
    """
    from psycopg import sql

    if not confirmed:
        from services.errors import ConfirmationRequired

        raise ConfirmationRequired(f"deleting {username!r} from {profile.name} removes all their data; confirm, or pass --yes")
    folder = project.root / "private" / "deleted-users" / profile.name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(project.root / "private", 0o700)
    stamp_ = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{username}-{stamp_}.json"
    with user_data_connection(profile, project, acting_user=username) as conn:
        # One transaction, the row locked from export to delete: nothing written in between is lost.
        document, checksum = _export(conn, profile, username, None, lock=True)
        write_new(path, document, mode=0o600)  # on disk before the delete commits
        user_id = _user_row(conn, profile, username, "id")["id"]
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(table_for(profile))), (user_id,))
        conn.execute("UPDATE user_data_events SET username = NULL, username_sha256 = %s WHERE user_id = %s",
                     (user_data.sha256_hex(username.encode()), user_id))
        record_event(conn, profile, "delete", user_id=user_id, username=None, checksum=checksum,
                     username_sha256=user_data.sha256_hex(username.encode()))
    return path, checksum


class _JsonText:
    """JSON text (UTF-8) for a query parameter: PostgreSQL parses it once; Python never serialises it again."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _json_text_dumper() -> type:
    from psycopg.adapt import Dumper

    class JsonTextDumper(Dumper):
        oid = 25  # text: the statement casts it to jsonb

        def dump(self, obj: _JsonText) -> bytes:
            return obj.data

    return JsonTextDumper


#: A move of personal data, for both psycopg (see user_data.render_sql) and psql; '' stands for NULL.
_EVENT_SQL = (
    "INSERT INTO user_data_events (event, environment, user_id, username, username_sha256, actor, "
    "source_environment, source, checksum, details) VALUES (:'event', :'environment', "
    "nullif(:'user_id', '')::uuid, nullif(:'username', ''), nullif(:'username_sha256', ''), :'actor', "
    "nullif(:'source_environment', ''), nullif(:'source', ''), nullif(:'checksum', ''), :'details'::jsonb)"
)


def record_event(conn: psycopg.Connection, profile: Profile, event: str, *, user_id: uuid.UUID | None,
                 username: str | None, source: str | None = None, source_environment: str | None = None,
                 checksum: str | None = None, details: dict[str, Any] | None = None,
                 username_sha256: str | None = None) -> None:
    """Record a move of personal data (inside the caller's transaction): who, when, where, checksum."""
    values = {"event": event, "environment": profile.name, "user_id": user_id, "username": username,
              "username_sha256": username_sha256, "actor": _actor(), "source_environment": source_environment,
              "source": source, "checksum": checksum, "details": details or {}}
    conn.execute(user_data.render_sql(_EVENT_SQL),
                 {k: "" if v is None else json.dumps(v, ensure_ascii=False) if k == "details" else str(v)
                  for k, v in values.items()})


def _user_row(conn: psycopg.Connection, profile: Profile, username: str, columns: str, *,
              lock: bool | Literal["share"] = False) -> dict[str, Any]:
    """Return the user's row (locked FOR UPDATE with lock=True, FOR SHARE with "share"); raise UserNotFound."""
    from psycopg import sql
    from psycopg.rows import dict_row

    table = table_for(profile)
    clause = {True: " FOR UPDATE", "share": " FOR SHARE"}.get(lock, "")
    query = sql.SQL("SELECT " + columns + " FROM {} WHERE username = %s" + clause).format(
        sql.Identifier(table))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (username,)).fetchone()
    if row is None:
        known = list_usernames(conn, table)
        listing = ", ".join(known) if known else "none yet"
        raise UserNotFound(f"no user {username!r} in environment {profile.name}; users: {listing}")
    return row


def _actor() -> str:
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _display_path(path: Path, project: Project) -> str:
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(project.root))
    except ValueError:
        return resolved.name


def _no_changes() -> dict[str, list[str]]:
    return {"added": [], "changed": [], "removed": []}


def dumps_summary(changes: dict[str, list[str]]) -> str:
    """Return a one-line summary of changed top-level keys, e.g. `added: a, b; changed: c`."""
    def _shown(key: str) -> str:
        return key if key.isprintable() and "," not in key else json.dumps(key, ensure_ascii=False)

    parts = [f"{kind}: {', '.join(map(_shown, keys))}" for kind, keys in changes.items() if keys]
    return "; ".join(parts) if parts else "no changes"

