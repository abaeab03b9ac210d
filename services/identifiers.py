"""The rules for names people and profiles choose: usernames, email addresses, environment and SQL names.

Written once here; profiles (a default user), users (create, import) and the audit's targets use them.
Each `is_*` is a plain test; `validate_*` raises UsageError naming the rule.
"""

from __future__ import annotations

import re

from services.errors import UsageError

USERNAME_RULE = "2-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{1,62}")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
#: An environment's name: a profile's file name, part of .env keys and of database names.
_ENVIRONMENT = re.compile(r"[a-z][a-z0-9_]{0,30}")
#: A lower-case SQL identifier that needs no quoting.
_SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def is_username(text: str) -> bool:
    return _USERNAME.fullmatch(text) is not None


def is_email(text: str) -> bool:
    return len(text) <= 254 and _EMAIL.fullmatch(text) is not None


def is_environment_name(text: str) -> bool:
    return _ENVIRONMENT.fullmatch(text) is not None


def is_sql_name(text: str) -> bool:
    return _SQL_NAME.fullmatch(text) is not None


def validate_username(username: str) -> str:
    """Return the username when valid; raise UsageError naming the rule otherwise."""
    if not is_username(username):
        raise UsageError(f"username {username!r} is not valid; use {USERNAME_RULE}")
    return username


def validate_email(email: str) -> str:
    """Return the email when it looks like an address; raise UsageError otherwise."""
    if not is_email(email):
        raise UsageError(f"email {email!r} is not a valid address; use the form name@example.com")
    return email
