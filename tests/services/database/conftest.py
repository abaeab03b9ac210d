"""`scratch`: an empty database of the test's own in the shared alpha server, dropped afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from psycopg import sql

from services import credentials
from services.database import connection


@pytest.fixture
def scratch(alpha_env) -> Iterator[connection.Target]:
    """An empty database owned by piper_owner in the shared alpha server (a name of its own), dropped afterwards."""
    profile, project = alpha_env
    name = f"piper_scratch_{secrets.token_hex(4)}"
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER piper_owner").format(sql.Identifier(name)))
    yield credentials.target(profile, project, "owner", dbname=name)
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
