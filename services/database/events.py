"""The record of every move of personal data (table user_data_events): who, when, where, checksum."""

from __future__ import annotations

import getpass
import json
import os
from typing import TYPE_CHECKING, Any

from services.database.statements import EVENT_SQL, render_sql

if TYPE_CHECKING:
    import uuid

    import psycopg


def record_event(conn: psycopg.Connection, environment: str, event: str, *, user_id: uuid.UUID | None,
                 username: str | None, source: str | None = None, source_environment: str | None = None,
                 checksum: str | None = None, details: dict[str, Any] | None = None,
                 username_sha256: str | None = None) -> None:
    """Record a move of personal data inside the caller's transaction; never the data itself."""
    values = event_values(environment, event, user_id=user_id, username=username, source=source,
                          source_environment=source_environment, checksum=checksum, details=details,
                          username_sha256=username_sha256)
    conn.execute(render_sql(EVENT_SQL), values)


def event_values(environment: str, event: str, *, user_id: uuid.UUID | str | None, username: str | None,
                 source: str | None = None, source_environment: str | None = None, checksum: str | None = None,
                 details: dict[str, Any] | None = None, username_sha256: str | None = None) -> dict[str, str]:
    """Return EVENT_SQL's parameters as text (what psql's variables and the driver both take)."""
    values = {"event": event, "environment": environment, "user_id": user_id, "username": username,
              "username_sha256": username_sha256, "actor": actor(), "source_environment": source_environment,
              "source": source, "checksum": checksum, "details": details or {}}
    return {k: "" if v is None else json.dumps(v, ensure_ascii=False) if k == "details" else str(v)
            for k, v in values.items()}


def actor() -> str:
    """Return who is acting: the OS account's name (as events record it)."""
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
