"""Sessions on user data: one transaction, the environment's stamp checked, the acting user set.

Row-level security (migration 0003) keys on the session setting ACTING_USER_SETTING: as the
application role, a transaction that names its acting user sees and changes only that user's
row, and nothing when it names none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from services.database import stamp
from services.database.connection import Target, connect
from services.errors import ClusterError

if TYPE_CHECKING:
    import psycopg

#: The session setting that row-level security keys on (migration 0003).
ACTING_USER_SETTING = "piper.acting_user"


@contextmanager
def user_transaction(where: Target, environment: str, *, acting_user: str | None = None) -> Iterator[psycopg.Connection]:
    """Yield a connection inside one transaction, after checking the database is `environment`'s.

    The acting user is set for the transaction only (`set_config(..., true)`, like SET LOCAL):
    on a pooled connection a session-wide SET would carry over to whoever uses it next. It
    commits when the block ends normally and rolls back when it raises.
    """
    import psycopg

    with connect(where) as conn:
        stamp.check_stamp(conn, environment, where.display())
        try:
            with conn.transaction():
                if acting_user is not None:
                    act_as(conn, acting_user)
                yield conn
        except psycopg.OperationalError as exc:
            # The server went away mid-transaction (stopped, killed, restarted): nothing was committed.
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ClusterError(f"the connection to environment {environment!r} at {where.display()} was lost: {reason}; "
                               f"nothing was committed: run `invoke db-start --env {environment}` and try again") from None


def act_as(conn: psycopg.Connection, username: str) -> None:
    """Name the acting user for the rest of the connection's current transaction."""
    conn.execute("SELECT set_config(%s, %s, true)", (ACTING_USER_SETTING, username))
