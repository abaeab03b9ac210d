"""Users of an environment's `alpha_users` table."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from services.database import connection
from services.errors import UsageError
from services.profiles import Profile
from services.project import Project

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,62}$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


@dataclass(frozen=True)
class UserResult:
    """A user and whether this call created it."""

    id: uuid.UUID
    username: str
    email: str
    created: bool


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


def create_user(profile: Profile, project: Project, username: str, email: str | None = None,
                display_name: str | None = None) -> UserResult:
    """Create the user in alpha_users, or return the existing one unchanged (idempotent).

    An existing user with another email than the one asked for is an error, not a silent success.
    """
    validate_username(username)
    if email is not None:
        validate_email(email)
    existing = _find_user_row(profile, project, username)
    if existing is not None:
        return _unchanged(profile, existing, username, email)
    return _insert_user(profile, project, username, email or f"{username}@example.invalid", display_name)


def _insert_user(profile: Profile, project: Project, username: str, email: str, display_name: str | None) -> UserResult:
    from sqlalchemy import select
    from sqlalchemy.dialects.postgresql import insert

    from services.database.models import AlphaUser

    with connection.session(profile, project) as db:
        if db.scalars(select(AlphaUser.username).where(AlphaUser.email == email)).one_or_none() is not None:
            raise UsageError(f"email {email!r} already belongs to another user in {profile.name}; use another email")
        # ON CONFLICT: two setups running the same step at once both succeed, one of them unchanged.
        new_id = db.scalars(
            insert(AlphaUser).values(username=username, email=email, display_name=display_name)
            .on_conflict_do_nothing(index_elements=[AlphaUser.username]).returning(AlphaUser.id)
        ).one_or_none()
        if new_id is not None:
            return UserResult(new_id, username, email, created=True)
        row = db.execute(select(AlphaUser.id, AlphaUser.username, AlphaUser.email).where(AlphaUser.username == username)).one()
    return _unchanged(profile, (row[0], row[1], row[2]), username, email)


def _find_user_row(profile: Profile, project: Project, username: str) -> tuple[uuid.UUID, str, str] | None:
    """Return (id, username, email) of a user, through the driver alone.

    Every `invoke setup` re-runs its create-user step; answering "already there" without loading
    the ORM keeps a warm setup fast.
    """
    from services import stamp

    where = connection.target(profile, project, "app")
    with connection.connect(where) as conn:
        stamp.check_stamp(conn, profile.name, where.display())
        row = conn.execute("SELECT id, username, email FROM alpha_users WHERE username = %s", (username,)).fetchone()
    return (row[0], row[1], row[2]) if row else None


def _unchanged(profile: Profile, row: tuple[uuid.UUID, str, str], username: str, email: str | None) -> UserResult:
    if email and row[2] != email:
        raise UsageError(
            f"user {username!r} already exists in {profile.name} with another email; "
            "choose another username or leave --email out"
        )
    return UserResult(row[0], row[1], row[2], created=False)
