"""The environment stamp: every database records which environment it belongs to (invariant 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.errors import EnvironmentMismatchError

if TYPE_CHECKING:
    import psycopg

STAMP_KEY = "environment"


def read_stamp(connection: psycopg.Connection) -> str | None:
    """Return the environment the database is stamped with, or None when it carries no stamp."""
    row = connection.execute("SELECT to_regclass('public.piper_metadata') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = connection.execute("SELECT value FROM public.piper_metadata WHERE key = %s", (STAMP_KEY,)).fetchone()
    return found[0] if found else None


def check_stamp(connection: psycopg.Connection, environment: str, where: str, *, allow_unstamped: bool = False) -> str | None:
    """Refuse a database stamped for another environment; return the stamp found.

    An unstamped database is refused too, unless allow_unstamped (only `invoke setup` stamps).
    """
    found = read_stamp(connection)
    if found is not None and found != environment:
        raise EnvironmentMismatchError(
            f"database {where} is stamped for environment {found!r}, not {environment!r}; "
            f"use --env {found}, or fix database settings in environments/{environment}.yaml"
        )
    if found is None and not allow_unstamped:
        raise EnvironmentMismatchError(
            f"database {where} carries no environment stamp; run `invoke setup --env {environment}` first"
        )
    return found


def write_stamp(connection: psycopg.Connection, environment: str) -> None:
    """Stamp the database with its environment (inside the caller's transaction)."""
    connection.execute(write_stamp_sql(environment))


def write_stamp_sql(environment: str) -> str:
    """Return the statement that stamps a database with its environment, for psql and the driver alike."""
    return ("INSERT INTO public.piper_metadata (key, value) VALUES "
            f"({_literal(STAMP_KEY)}, {_literal(environment)}) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
