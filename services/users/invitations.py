"""Invitations to the hosted production environment: single-use, expiring, stored only as a hash.

An import into production creates the user without a password and an invitation. The invitation
email is rendered with Jinja2 into the local outbox folder (nothing is sent); the user sets the
password with `accept_invitation.py`, hashed with Argon2id (argon2-cffi).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from services.database import events
from services.errors import PiperError, UsageError
from services.files import write_new
from services.profiles import Profile
from services.project import Project
from services.users import store

if TYPE_CHECKING:
    import psycopg

VALID_FOR = timedelta(days=7)
MIN_PASSWORD_LENGTH = 12


class InvitationRefused(PiperError):
    """The token is unknown, used, or expired."""


@dataclass(frozen=True)
class Acceptance:
    user_id: uuid.UUID
    username: str


def token_hash(token: str) -> str:
    """Return the stored form of a token: its SHA-256 (a random 256-bit token needs no slow hash)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def outbox_dir(project: Project) -> Path:
    """Return the git-ignored folder where invitation emails are written (mode 0700)."""
    return project.root / "outbox"


@dataclass(frozen=True)
class PendingInvitation:
    """An invitation whose hash is stored in the (uncommitted) transaction; its email is not written yet."""

    filename: str
    text: str


def invite(conn: psycopg.Connection, profile: Profile, user_id: uuid.UUID, username: str, email: str, *,
           display_name: str | None = None) -> PendingInvitation:
    """Store an invitation (its token's hash) inside the caller's transaction; return its email, unwritten."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + VALID_FOR
    conn.execute("INSERT INTO user_invitations (user_id, token_hash, expires_at) VALUES (%s, %s, %s)",
                 (user_id, token_hash(token), expires))
    events.record_event(conn, profile.name, "invite", user_id=user_id, username=username, details={"expires_at": expires.isoformat()})
    templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), undefined=StrictUndefined,
                            autoescape=False, keep_trailing_newline=True)
    text = templates.get_template("invitation.txt.j2").render(
        email=email, username=username, display_name=display_name, token=token, expires_at=expires,
        environment=profile.name)
    return PendingInvitation(f"invitation-{username}-{expires.strftime('%Y%m%dT%H%M%S%fZ')}.eml", text)


def write_invitation(project: Project, pending: PendingInvitation, outbox: Path | None = None) -> Path:
    """Write a committed invitation's email into the outbox (git-ignored, 0700; file 0600); return its path."""
    folder = outbox or outbox_dir(project)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = folder / pending.filename
    write_new(path, pending.text, mode=0o600)
    return path


def accept_invitation(profile: Profile, project: Project, token: str, password: str) -> Acceptance:
    """Set the invited user's password (Argon2id) and use up the token, in one transaction."""
    from argon2 import PasswordHasher

    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password is shorter than {MIN_PASSWORD_LENGTH} characters; choose a longer one")
    if not token or len(token) > 200:
        raise InvitationRefused("the invitation token is not valid; copy it whole from the invitation email")
    with store.user_data_connection(profile, project) as conn:
        row = conn.execute(
            "SELECT i.id, i.expires_at, i.used_at, u.id, u.username FROM user_invitations i "
            "JOIN users u ON u.id = i.user_id WHERE i.token_hash = %s FOR UPDATE OF i", (token_hash(token),)).fetchone()
        if row is None:
            raise InvitationRefused("the invitation token is not valid; copy it whole from the invitation email")
        if row[2] is not None:
            raise InvitationRefused("this invitation was already used; ask for a new one")
        if row[1] <= datetime.now(UTC):
            raise InvitationRefused("this invitation has expired; ask for a new one")
        conn.execute("UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s",
                     (PasswordHasher().hash(password), row[3]))
        conn.execute("UPDATE user_invitations SET used_at = now() WHERE id = %s", (row[0],))
        events.record_event(conn, profile.name, "accept", user_id=row[3], username=row[4])
    return Acceptance(row[3], row[4])
