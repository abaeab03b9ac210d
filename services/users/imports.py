"""Import one user's exported data, with consent: plan what it would change, then apply that plan.

An existing user with other data is a conflict unless the mode says merge or replace; the plan is
applied only if the user did not change since it was made, so a confirmation always matches what
is written. Into hosted production the user arrives without a password, with an invitation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from services import identifiers
from services.database import events
from services.errors import PiperError, UsageError
from services.profiles import Profile
from services.project import Project
from services.users import documents, invitations, store

if TYPE_CHECKING:
    import uuid

ImportMode = Literal["refuse", "merge", "replace"]


class ImportConflict(PiperError):
    """The user exists with other data and neither --merge nor --replace was chosen."""


@dataclass(frozen=True)
class ImportPlan:
    """What an import will do; `apply_import` carries it out if nothing changed meanwhile."""

    environment: str
    table: str
    username: str
    email: str
    action: Literal["create", "unchanged", "conflict", "merge", "replace"]
    document: documents.ExportDocument
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


def plan_import(profile: Profile, project: Project, raw: bytes, origin: str, username: str, email: str | None,
                mode: ImportMode = "refuse") -> ImportPlan:
    """Verify an export document and work out what importing it would change; write nothing."""
    document = documents.parse_export(raw, origin)
    identifiers.validate_username(username)
    if document.user["username"] != username:
        raise documents.UserDataError(
            f"{origin} holds user {document.user['username']!r}, not {username!r}; pass --username {document.user['username']}"
        )
    address = identifiers.validate_email(email or document.user["email"])
    table = store.table_for(profile)
    not_carried = sorted(k for k in ("learning_data", "notes", "alpha_wave") if table == "users" and
                         (document.learning_data if k == "learning_data" else document.user.get(k)) is not None)
    from psycopg import sql

    with store.user_data_connection(profile, project, acting_user=username) as conn:
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
                          incoming_learning, documents.changed_keys({}, document.preferences), None, not_carried)
    current_prefs, current_learning = row[3], (row[5] if table == "alpha_users" else None)
    # A partial export (--keys) speaks only of its keys: the user's other preferences stay.
    incoming = document.preferences if document.keys is None else {
        **{k: v for k, v in current_prefs.items() if k not in document.keys}, **document.preferences}
    same = (row[1] == address and current_prefs == incoming
            and (table == "users" or current_learning == incoming_learning)
            and (document.user.get("display_name") in (None, row[2])))
    if same:
        return ImportPlan(profile.name, table, username, address, "unchanged", document, current_prefs,
                          current_learning, documents.changed_keys(current_prefs, current_prefs), row[4], not_carried)
    if mode == "merge":
        prefs = documents.deep_merge(current_prefs, document.preferences)
        learning = documents.deep_merge(current_learning, incoming_learning) if incoming_learning is not None else current_learning
    elif mode == "replace":
        prefs, learning = incoming, incoming_learning
    else:
        prefs, learning = current_prefs, current_learning
    action = mode if mode != "refuse" else "conflict"
    return ImportPlan(profile.name, table, username, address, action, document, prefs, learning,  # type: ignore[arg-type]
                      documents.changed_keys(current_prefs, incoming if action == "conflict" else prefs),
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
    # Written only once the user and the invitation's hash are committed: no email for a token that does not exist.
    return ImportResult(user_id, plan.action, invitations.write_invitation(project, pending, outbox))


def _apply(profile: Profile, project: Project, plan: ImportPlan) -> tuple[uuid.UUID, Any]:
    from psycopg import sql
    from psycopg.types.json import Jsonb

    table = sql.Identifier(plan.table)
    pending = None
    with store.user_data_connection(profile, project, acting_user=plan.username) as conn:
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
        events.record_event(conn, profile.name, "import", user_id=user_id, username=plan.username,
                            source_environment=plan.document.source_environment, checksum=plan.document.checksum,
                            details={"action": plan.action, "changes": plan.changes, "exported_at": plan.document.exported_at})
    return user_id, pending


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
