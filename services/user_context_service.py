"""One user's context: the generic PIPER.md configuration, overridden by that user's preferences.

Precedence (highest first):

1. the user's `preferences` JSONB in their own environment's database;
2. the generic `config/PIPER.md`, parsed into named sections.

The two are deep-merged (services.users.documents.deep_merge): where both hold an object the keys
merge, anywhere else the user's value wins. Each PIPER.md section `## Some Heading` becomes the key
`some_heading` holding `{"title": "Some Heading", "text": "<the section's markdown>"}`, so a user
may override one aspect of a section (`{"personality": {"tone": "dry"}}`) and keep the rest.

It reads as the application role with the user named as the session's acting user, so
row-level security, not only this code, keeps other users' rows out of reach.

Failing closed: when the user's data cannot be read (no such user, database down, preferences
that are not an object) the service raises. It never falls back to the generic configuration:
that fallback once hid the loss of every tester's preferences for months.

The cache is per service instance and per user. An entry is used only while the user's row is
unchanged (`updated_at`) and PIPER.md is unchanged; every write through the service drops that
user's entry. Callers always get a deep copy, so one caller's changes can never reach another's
context.
"""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from services.errors import PiperError
from services.profiles import Profile
from services.project import Project
from services.users import documents
from services.users.store import table_for, user_data_connection

_HEADING = re.compile(r"^##\s+(.+?)\s*#*\s*$")


class UserContextError(PiperError):
    """A user's context could not be built; nothing is returned in its place."""


@dataclass(frozen=True)
class _Entry:
    version: datetime
    config_signature: tuple[int, int]
    context: dict[str, Any]


def parse_sections(markdown: str) -> dict[str, dict[str, str]]:
    """Return PIPER.md's level-2 sections as {key: {"title": ..., "text": ...}}."""
    sections: dict[str, dict[str, str]] = {}
    title: str | None = None
    lines: list[str] = []
    in_code = False

    def _close() -> None:
        if title is not None:
            key = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or "section"
            sections[key] = {"title": title, "text": "\n".join(lines).strip()}

    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        match = None if in_code else _HEADING.match(line)
        if match:
            _close()
            title, lines = match.group(1), []
        elif title is not None:
            lines.append(line)
    _close()
    return sections


class UserContextService:
    """Builds and caches user contexts for one environment."""

    def __init__(self, profile: Profile, project: Project, config_path: Path | None = None) -> None:
        self.profile = profile
        self.project = project
        self.config_path = config_path or project.config_dir / "PIPER.md"
        self._cache: dict[str, _Entry] = {}
        self._generic: tuple[tuple[int, int], dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def generic_config(self) -> dict[str, Any]:
        """Return the generic configuration parsed from PIPER.md (a copy)."""
        return copy.deepcopy(self._load_generic()[1])

    def get_context(self, username: str) -> dict[str, Any]:
        """Return the user's context: generic configuration deep-merged with their preferences."""
        signature, generic = self._load_generic()
        from psycopg import sql

        table = sql.Identifier(table_for(self.profile))
        with user_data_connection(self.profile, self.project, acting_user=username, role="app") as conn:
            row = conn.execute(sql.SQL("SELECT updated_at FROM {} WHERE username = %s").format(table), (username,)).fetchone()
            if row is None:
                raise UserContextError(f"no user {username!r} in environment {self.profile.name}; cannot build their context")
            with self._lock:
                entry = self._cache.get(username)
            if entry is not None and entry.version == row[0] and entry.config_signature == signature:
                return copy.deepcopy(entry.context)
            found = conn.execute(sql.SQL("SELECT preferences, updated_at FROM {} WHERE username = %s").format(table),
                                 (username,)).fetchone()
        if found is None:
            raise UserContextError(f"user {username!r} disappeared from {self.profile.name} while reading; try again")
        preferences, version = found
        if not isinstance(preferences, dict):
            raise UserContextError(
                f"the preferences of {username!r} in {self.profile.name} are not a JSON object; repair them with "
                "migrate_personal_data.py or an import"
            )
        context = documents.deep_merge(generic, preferences)
        with self._lock:
            self._cache[username] = _Entry(version, signature, context)
        return copy.deepcopy(context)

    def update_preferences(self, username: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Deep-merge changes into the user's preferences (one transaction); return the new preferences."""
        from psycopg import sql
        from psycopg.types.json import Jsonb

        if not isinstance(changes, dict):
            raise UserContextError("preference changes must be a JSON object")
        documents.check_storable(changes, "$")
        self.invalidate(username)
        table = sql.Identifier(table_for(self.profile))
        with user_data_connection(self.profile, self.project, acting_user=username, role="app") as conn:
            row = conn.execute(sql.SQL("SELECT preferences FROM {} WHERE username = %s FOR UPDATE").format(table),
                               (username,)).fetchone()
            if row is None:
                raise UserContextError(f"no user {username!r} in environment {self.profile.name}")
            merged = documents.deep_merge(row[0], changes)
            conn.execute(sql.SQL("UPDATE {} SET preferences = %s, updated_at = clock_timestamp() WHERE username = %s")
                         .format(table), (Jsonb(merged), username))
        self.invalidate(username)
        return copy.deepcopy(merged)

    def invalidate(self, username: str | None = None) -> None:
        """Drop one user's cached context, or every user's."""
        with self._lock:
            if username is None:
                self._cache.clear()
            else:
                self._cache.pop(username, None)

    def _load_generic(self) -> tuple[tuple[int, int], dict[str, Any]]:
        try:
            info = self.config_path.stat()
            signature = (info.st_mtime_ns, info.st_size)
            if self._generic is not None and self._generic[0] == signature:
                return self._generic
            text = self.config_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserContextError(f"cannot read {self.config_path} ({exc.strerror}); restore it with `invoke restore-config`") from None
        self._generic = (signature, parse_sections(text))
        return self._generic
