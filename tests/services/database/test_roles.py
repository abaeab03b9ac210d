"""services/database/roles.py: the roles and grants of a database, on the shared alpha server.

Each test changes nothing another test could notice: what it breaks, it breaks inside a
transaction it rolls back, or in a statement that fails.
"""

from __future__ import annotations

import dataclasses
import time

import psycopg
import pytest

from services import credentials
from services.database import connection, roles
from services.errors import ClusterError
from services.postgres import servers
from tests.support.cli import INVOKE, run_cli
from tests.support.databases import connect


def test_the_application_role_cannot_change_the_stamp(alpha_env) -> None:
    profile, project = alpha_env
    with connection.connect(credentials.target(profile, project, "app")) as conn:
        assert conn.execute("SELECT value FROM piper_metadata").fetchall() == [("alpha",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE piper_metadata SET value = 'dev'")


def test_the_application_limits_hold_until_a_grant_breaks_them(alpha_env) -> None:
    profile, project = alpha_env
    with connect(profile, project) as conn:
        assert roles.application_limits_hold(conn, "piper_app")
        conn.execute("GRANT UPDATE ON piper_metadata TO piper_app")
        assert not roles.application_limits_hold(conn, "piper_app")
        conn.rollback()
        conn.execute("GRANT SELECT ON user_data_events TO piper_app")
        assert not roles.application_limits_hold(conn, "piper_app")
        conn.rollback()
        assert roles.application_limits_hold(conn, "piper_app")


def test_the_closed_tables_are_out_of_the_application_roles_reach(alpha_env) -> None:
    profile, project = alpha_env
    with connect(profile, project, "app") as conn:
        assert roles.closed_tables_reachable(conn) == []
    with connect(profile, project) as conn:
        assert roles.closed_tables_reachable(conn) == list(roles.CLOSED_TO_APP)


def test_bootstrap_creates_only_what_is_missing(alpha_env) -> None:
    profile, project = alpha_env
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    unused = {"owner": "never-set-1", "app": "never-set-2"}
    with connection.connect(admin, autocommit=True) as conn:
        assert roles.bootstrap(conn, "piper_alpha", unused) == []
        name = f"piper_bootstrap_{time.time_ns()}"
        try:
            assert roles.bootstrap(conn, name, unused) == [f"created database {name}"]
            assert roles.database_exists(conn, name)
            owner, public = conn.execute("SELECT pg_get_userbyid(datdba), has_database_privilege('public', datname, "
                                         "'CONNECT') FROM pg_database WHERE datname = %s", (name,)).fetchone()
            assert (owner, public) == ("piper_owner", False)
            assert conn.execute("SELECT has_database_privilege('piper_app', %s, 'CONNECT')", (name,)).fetchone() == (True,)
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    # The roles kept their passwords: the unused ones open nothing, the environment's still do.
    owner = credentials.target(profile, project, "owner")
    with pytest.raises(ClusterError, match="password authentication failed"):
        connection.connect(dataclasses.replace(owner, password=unused["owner"]))
    with connection.connect(owner) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("piper_owner",)


@pytest.mark.parametrize("killed_after", ["CREATE DATABASE", "REVOKE ALL ON DATABASE"])
def test_bootstrap_finishes_a_database_whose_creation_was_cut_short(alpha_env, killed_after: str) -> None:
    profile, project = alpha_env
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    name = f"piper_halfmade_{time.time_ns()}"
    with connection.connect(admin, autocommit=True) as conn:
        try:
            conn.execute(f'CREATE DATABASE "{name}" OWNER piper_owner')  # PUBLIC may connect: the default
            if killed_after == "REVOKE ALL ON DATABASE":
                conn.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')  # and piper_app may not
            assert not roles.database_access_holds(conn, name, "piper_app")
            assert roles.bootstrap(conn, name, {"owner": "unused", "app": "unused"}) == [
                f"gave piper_app (and no one else) the right to connect to {name}"]
            assert roles.database_access_holds(conn, name, "piper_app")
            assert conn.execute("SELECT has_database_privilege('public', %s, 'CONNECT')", (name,)).fetchone() == (False,)
            assert roles.bootstrap(conn, name, {"owner": "unused", "app": "unused"}) == []
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_setup_gives_back_the_application_roles_connect_privilege(fresh_tester) -> None:
    profile, project = fresh_tester
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute("REVOKE ALL ON DATABASE piper_tester FROM piper_app")
    with pytest.raises(ClusterError, match="CONNECT privilege"):
        connection.connect(credentials.target(profile, project, "app"))
    again = run_cli([*INVOKE, "setup", "--env", "tester"], project)
    assert again.returncode == 0, again.stderr
    assert "gave piper_app (and no one else) the right to connect to piper_tester" in again.stdout
    with connection.connect(credentials.target(profile, project, "app")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("piper_app",)


def test_a_password_statement_never_reaches_the_server_log_even_when_it_fails(alpha_env) -> None:
    profile, project = alpha_env
    server = servers.locate(profile, project)
    secret = f"never-in-the-log-{time.time_ns()}"
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn, pytest.raises(psycopg.errors.DuplicateObject):
        roles.set_role_password(conn, "piper_app", secret, create_with="LOGIN")  # the role exists: it fails
    deadline = time.monotonic() + 10
    log = ""
    while '"piper_app" already exists' not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = server.log_file.read_text(errors="replace")
    assert '"piper_app" already exists' in log  # the failure is logged ...
    assert secret not in log  # ... without the statement that holds the password
