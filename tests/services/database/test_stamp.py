"""services/database/stamp.py: every database says which environment it belongs to, and others refuse it."""

from __future__ import annotations

import pytest

from services.database import connection, stamp
from services.errors import EnvironmentMismatchError
from tests.support.databases import connect


def test_a_stamped_database_refuses_another_environment(alpha_env) -> None:
    profile, project = alpha_env
    with connect(profile, project) as conn:
        assert stamp.read_stamp(conn) == "alpha"
        assert stamp.check_stamp(conn, "alpha", "piper_alpha") == "alpha"
        with pytest.raises(EnvironmentMismatchError) as caught:
            stamp.check_stamp(conn, "tester", "piper_alpha", allow_unstamped=True)
        assert str(caught.value) == ("database piper_alpha is stamped for environment 'alpha', not 'tester'; use --env "
                                     "alpha, or fix database settings in environments/tester.yaml")
        conn.rollback()
        stamp.write_stamp(conn, "tester")  # in a transaction that is rolled back
        assert stamp.read_stamp(conn) == "tester"
        conn.rollback()
        assert stamp.read_stamp(conn) == "alpha"


def test_an_unstamped_database_is_refused_unless_setup_asks(scratch) -> None:
    with connection.connect(scratch) as conn:
        assert stamp.read_stamp(conn) is None
        with pytest.raises(EnvironmentMismatchError, match="carries no environment stamp; run `invoke setup --env alpha` first"):
            stamp.check_stamp(conn, "alpha", scratch.display())
        assert stamp.check_stamp(conn, "alpha", scratch.display(), allow_unstamped=True) is None
        conn.execute("CREATE TABLE piper_metadata (key text PRIMARY KEY, value text NOT NULL, "
                     "updated_at timestamptz NOT NULL DEFAULT now())")
        assert stamp.read_stamp(conn) is None  # the table, but no stamp in it
        stamp.write_stamp(conn, "alpha")
        stamp.write_stamp(conn, "alpha")  # once more: one stamp, not two
        assert conn.execute("SELECT key, value FROM piper_metadata").fetchall() == [("environment", "alpha")]
