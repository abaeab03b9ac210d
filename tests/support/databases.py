"""Looking at what a command did: small queries as an environment's owner role (which RLS does not restrict)."""

from __future__ import annotations

from typing import Any

import psycopg

from services import credentials
from services.database import connection
from services.profiles import Profile
from services.project import Project


def connect(profile: Profile, project: Project, role: str = "owner") -> psycopg.Connection:
    """Return a connection to the environment's database as one of its roles."""
    return connection.connect(credentials.target(profile, project, role))  # type: ignore[arg-type]


def query(profile: Profile, project: Project, sql: str, params: Any = None, role: str = "owner") -> list[tuple]:
    """Return every row of one query."""
    with connect(profile, project, role) as conn:
        return conn.execute(sql, params).fetchall()


def set_preferences(profile: Profile, project: Project, username: str, preferences: Any,
                    table: str = "alpha_users") -> None:
    """Replace a user's preferences (committed)."""
    from psycopg.types.json import Jsonb

    with connect(profile, project) as conn:
        conn.execute(f"UPDATE {table} SET preferences = %s WHERE username = %s", (Jsonb(preferences), username))
        conn.commit()


def user_row(profile: Profile, project: Project, username: str, table: str = "alpha_users") -> tuple | None:
    """Return (email, preferences) of a user, or None when there is no such user."""
    with connect(profile, project) as conn:
        return conn.execute(f"SELECT email, preferences FROM {table} WHERE username = %s", (username,)).fetchone()
