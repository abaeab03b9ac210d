"""services/database/connection.py: targets from explicit settings, hosted URLs that must use TLS, and
failures that name the database, never the password."""

from __future__ import annotations

import dataclasses

import pytest

from services.database import connection
from services.errors import ClusterError, UsageError
from tests.support.projects import free_port

SECRET = "s3cret-Pw-for-tests"


def _from_url(url: str, **kwargs: str) -> connection.Target:
    return connection.target_from_url(url, environment="production", variable="PIPER_PRODUCTION_DATABASE_URL",
                                      default_dbname="piper_production", required_sslmode="verify-full", **kwargs)


def test_a_url_becomes_a_target_with_tls_required_by_default() -> None:
    target = _from_url(f"postgresql://piper_owner:{SECRET}@db.example.invalid:6543/piper_x?sslrootcert=/ca.crt")
    assert (target.host, target.port, target.dbname, target.user, target.password) == (
        "db.example.invalid", 6543, "piper_x", "piper_owner", SECRET)
    assert (target.sslmode, target.sslrootcert, target.url_env) == ("verify-full", "/ca.crt", "PIPER_PRODUCTION_DATABASE_URL")
    bare = _from_url(f"postgresql://piper_owner:{SECRET}@db.example.invalid", sslrootcert="/profile.crt")
    assert (bare.port, bare.dbname, bare.sslrootcert) == (None, "piper_production", "/profile.crt")
    assert _from_url(f"postgresql://u:{SECRET}@h/d?sslmode=require").sslmode == "require"


@pytest.mark.parametrize("sslmode", connection.PLAIN_SSLMODES)
def test_a_url_that_allows_a_plain_connection_is_refused(sslmode: str) -> None:
    with pytest.raises(UsageError) as caught:
        _from_url(f"postgresql://u:{SECRET}@127.0.0.1:5/piper?sslmode={sslmode}")
    assert str(caught.value) == (f"PIPER_PRODUCTION_DATABASE_URL asks for sslmode={sslmode}, but environment "
                                 "'production' requires TLS; use sslmode=verify-full")


@pytest.mark.parametrize("url", [f"postgresql://u:{SECRET}@[::1/db", f"not a url {SECRET}",
                                 f"postgresql://u:{SECRET}@h/db?no_such_parameter=1"])
def test_a_bad_url_is_one_line_that_never_shows_the_password(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        _from_url(url)
    message = str(caught.value)
    assert message == ("PIPER_PRODUCTION_DATABASE_URL is not a valid PostgreSQL URL; "
                       "use postgresql://user:password@host:port/dbname")
    assert SECRET not in message and caught.value.__suppress_context__


def test_a_url_whose_port_is_not_a_number_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="is not a valid PostgreSQL URL"):
        _from_url(f"postgresql://u:{SECRET}@h:port/db")


def test_a_target_shows_itself_without_its_password() -> None:
    local = connection.Target("alpha", "/srv/sockets", 54322, "piper_alpha", "piper_owner", SECRET)
    assert local.display() == "postgresql://piper_owner:***@[socket /srv/sockets]:54322/piper_alpha"
    assert SECRET not in repr(local) and SECRET in local.conninfo()
    hosted = dataclasses.replace(local, host="db.example.invalid", port=None)
    assert hosted.display() == "postgresql://piper_owner:***@db.example.invalid/piper_alpha"


def test_a_failed_connection_names_the_database_and_the_fix_not_the_password(alpha_env) -> None:
    from services import credentials

    profile, project = alpha_env
    wrong = dataclasses.replace(credentials.target(profile, project, "owner"), password=SECRET)
    with pytest.raises(ClusterError) as caught:
        connection.connect(wrong)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to environment 'alpha' at {wrong.display()}: ")
    assert "password authentication failed" in message and "`invoke " in message and "--env alpha`" in message
    assert SECRET not in message and "\n" not in message
    # Nothing listens there: for a hosted database the fix is its URL.
    nowhere = dataclasses.replace(wrong, host="127.0.0.1", port=free_port(), url_env="PIPER_PRODUCTION_DATABASE_URL")
    with pytest.raises(ClusterError, match="check the URL in PIPER_PRODUCTION_DATABASE_URL and that the server offers TLS"):
        connection.connect(nowhere)
