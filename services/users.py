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
    """Create the user in alpha_users, or return the existing one unchanged (idempotent)."""
    from sqlalchemy import select

    from services.database.models import AlphaUser

    validate_username(username)
    email = validate_email(email or f"{username}@example.invalid")
    with connection.session(profile, project) as db:
        existing = db.scalars(select(AlphaUser).where(AlphaUser.username == username)).one_or_none()
        if existing is not None:
            if email and existing.email != email:
                raise UsageError(
                    f"user {username!r} already exists in {profile.name} with another email; "
                    "choose another username or leave --email out"
                )
            return UserResult(existing.id, existing.username, existing.email, created=False)
        taken = db.scalars(select(AlphaUser.username).where(AlphaUser.email == email)).one_or_none()
        if taken is not None:
            raise UsageError(f"email {email!r} already belongs to another user in {profile.name}; use another email")
        user = AlphaUser(username=username, email=email, display_name=display_name)
        db.add(user)
        db.flush()
        return UserResult(user.id, user.username, user.email, created=True)
