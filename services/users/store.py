"""Where an environment keeps its users, and the one way into them: a checked user-data session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from services import credentials
from services.database import sessions
from services.database.roles import Role
from services.errors import UsageError
from services.profiles import Profile
from services.project import Project

if TYPE_CHECKING:
    import psycopg

#: Profile fields carried by an export, per table. password_hash never leaves the database.
EXPORTED_FIELDS = {
    "alpha_users": ("username", "email", "display_name", "is_active", "is_verified", "alpha_wave", "created_at", "notes"),
    "users": ("username", "email", "display_name", "created_at"),
}


class UserNotFound(UsageError):
    """No such user in the environment; the message lists the users that exist."""


def table_for(profile: Profile) -> str:
    """Return the table that holds the environment's users."""
    return "users" if profile.hosted else "alpha_users"


@contextmanager
def user_data_connection(profile: Profile, project: Project, *, acting_user: str | None = None,
                         role: Role = "owner") -> Iterator[psycopg.Connection]:
    """Yield a connection inside one transaction on the environment's database, its stamp checked.

    As the application role, row-level security then shows and changes only the acting user's
    row, and nothing without one. Admin tasks (create, migrate, export, import, delete) act as
    the owner role, which RLS does not restrict; they still name the user they act for. Hosted
    production's roles come from its two URLs.
    """
    with sessions.user_transaction(credentials.target(profile, project, role), profile.name,
                                   acting_user=acting_user) as conn:
        yield conn


def list_usernames(conn: psycopg.Connection, table: str, limit: int = 50) -> list[str]:
    """Return up to `limit` usernames of the table, sorted."""
    from psycopg import sql

    query = sql.SQL("SELECT username FROM {} ORDER BY username LIMIT %s").format(sql.Identifier(table))
    return [row[0] for row in conn.execute(query, (limit,))]


def user_row(conn: psycopg.Connection, profile: Profile, username: str, columns: str, *,
             lock: bool | Literal["share"] = False) -> dict[str, Any]:
    """Return the user's row (locked FOR UPDATE with lock=True, FOR SHARE with "share"); raise UserNotFound."""
    from psycopg import sql
    from psycopg.rows import dict_row

    table = table_for(profile)
    clause = {True: " FOR UPDATE", "share": " FOR SHARE"}.get(lock, "")
    query = sql.SQL("SELECT " + columns + " FROM {} WHERE username = %s" + clause).format(sql.Identifier(table))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (username,)).fetchone()
    if row is None:
        known = list_usernames(conn, table)
        listing = ", ".join(known) if known else "none yet"
        raise UserNotFound(f"no user {username!r} in environment {profile.name}; users: {listing}")
    return row
