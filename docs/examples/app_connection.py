"""How the Piper application connects: one pooled SQLAlchemy engine from DATABASE_URL, the acting user per transaction.

    DATABASE_URL=... python docs/examples/app_connection.py USERNAME

`invoke setup` writes DATABASE_URL into `.env` (the application role, piper_app, over 127.0.0.1;
`invoke env --show-password` prints it). Row-level security shows piper_app only the row of the
user named by the setting `piper.acting_user`, and nothing when it names no one.

Set the acting user for the transaction only: `set_config('piper.acting_user', :u, true)` (or
`SET LOCAL`). A session-level `SET piper.acting_user = ...` stays on the pooled connection after
the request ends, and the next request that gets that connection acts as the previous user.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url


def make_engine(database_url: str | None = None, **pool: int) -> Engine:
    """Return a pooled engine for DATABASE_URL (a plain postgresql:// URL), over psycopg 3."""
    url = make_url(database_url or os.environ["DATABASE_URL"])
    if url.drivername == "postgresql":  # SQLAlchemy's default for postgresql:// is psycopg2
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True, **pool)


@contextmanager
def acting_as(engine: Engine, username: str) -> Iterator[Connection]:
    """Yield a connection inside one transaction that acts as username; commit at the end, roll back on error.

    The setting ends with the transaction: the pooled connection goes back to the pool naming no one.
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT set_config('piper.acting_user', :u, true)"), {"u": username})
        yield conn


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: DATABASE_URL=... python docs/examples/app_connection.py USERNAME", file=sys.stderr)
        return 2
    engine = make_engine()
    try:
        with acting_as(engine, argv[0]) as conn:
            rows = conn.execute(text("SELECT username, email FROM alpha_users ORDER BY username")).all()
        for username, email in rows:
            print(f"{username} {email}")
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
