"""DATABASE_URL in `.env`: the application role over loopback TCP with a password, kept right as things change."""

from __future__ import annotations

import stat
import subprocess

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from services import connection_info, credentials, envfile
from services.database import connection
from services.environments import lifecycle
from services.errors import UsageError
from services.postgres import servers
from services.profiles import load_profile
from services.project import Project
from tests.support.projects import free_port, make_project, remove_servers, set_up


def _env(project: Project) -> dict[str, str]:
    return envfile.read(project.env_file)


def _who(url: str) -> tuple[str, str, str]:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT current_user, current_database(), host(inet_server_addr())").fetchone()
    assert row is not None
    return row


def test_setup_writes_the_application_url_and_both_drivers_connect_over_loopback_tcp(fresh_tester) -> None:
    profile, project = fresh_tester
    values = _env(project)
    server = servers.locate(profile, project)
    password = values["PIPER_TESTER_APP_PASSWORD"]
    assert values["DATABASE_URL"] == f"postgresql://piper_app:{password}@127.0.0.1:{server.port}/piper_tester"
    assert stat.S_IMODE(project.env_file.stat().st_mode) == 0o600
    assert _who(values["DATABASE_URL"]) == ("piper_app", "piper_tester", "127.0.0.1")
    engine = create_engine(make_url(values["DATABASE_URL"]).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user, inet_server_addr() IS NOT NULL")).one() == ("piper_app", True)
    engine.dispose()


def test_loopback_tcp_wants_the_password(fresh_tester) -> None:
    profile, project = fresh_tester
    url = _env(project)["DATABASE_URL"]
    wrong = url.replace(_env(project)["PIPER_TESTER_APP_PASSWORD"], "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _who(wrong)
    no_password = url.replace(":" + _env(project)["PIPER_TESTER_APP_PASSWORD"] + "@", "@")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(no_password + "?connect_timeout=5", autocommit=True).close()


def test_a_second_setup_leaves_env_as_it_is(fresh_tester) -> None:
    profile, project = fresh_tester
    before = project.env_file.read_bytes(), project.env_file.stat().st_mtime_ns
    report = set_up(profile, project)
    assert not [c for c in report.changes if ".env" in c]
    assert (project.env_file.read_bytes(), project.env_file.stat().st_mtime_ns) == before


def test_selecting_another_environment_moves_database_url_and_teardown_forgets_it(fresh_tester) -> None:
    tester, project = fresh_tester
    alpha = load_profile("alpha", project)
    report = set_up(alpha, project)
    values = _env(project)
    assert values["PIPER_ENV"] == "alpha"
    assert any(change.startswith("wrote DATABASE_URL") and values["PIPER_ALPHA_APP_PASSWORD"] not in change
               for change in report.changes)
    assert _who(values["DATABASE_URL"])[:2] == ("piper_app", "piper_alpha")
    set_up(tester, project)  # back to tester
    assert _who(_env(project)["DATABASE_URL"])[:2] == ("piper_app", "piper_tester")
    lifecycle.teardown_environment(alpha, project, confirmed=True)  # not the selected one: DATABASE_URL stays
    assert _env(project)["PIPER_ENV"] == "tester" and "piper_tester" in _env(project)["DATABASE_URL"]
    lifecycle.teardown_environment(tester, project, confirmed=True)
    assert "DATABASE_URL" not in _env(project) and "PIPER_ENV" not in _env(project)
    assert stat.S_IMODE(project.env_file.stat().st_mode) == 0o600


def test_a_lost_password_gets_a_new_one_and_database_url_follows(fresh_tester) -> None:
    profile, project = fresh_tester
    old = _env(project)["DATABASE_URL"]
    envfile.update(project.env_file, {"PIPER_TESTER_APP_PASSWORD": None})
    set_up(profile, project)
    values = _env(project)
    assert values["DATABASE_URL"] != old and values["PIPER_TESTER_APP_PASSWORD"] in values["DATABASE_URL"]
    assert _who(values["DATABASE_URL"])[0] == "piper_app"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _who(old)


def test_a_new_port_reaches_database_url_with_the_next_setup(fresh_tester) -> None:
    profile, project = fresh_tester
    port = free_port()
    envfile.update(project.env_file, {"PIPER_TESTER_PORT": str(port)})  # the git-ignored local override
    profile = load_profile("tester", project)
    lifecycle.stop_environment(profile, project)
    set_up(profile, project)
    url = _env(project)["DATABASE_URL"]
    assert f"@127.0.0.1:{port}/piper_tester" in url
    assert _who(url)[0] == "piper_app"


def test_special_characters_in_the_password_are_percent_encoded(fresh_tester) -> None:
    profile, project = fresh_tester
    password = "p@ss:w/rd%#?&= ä\"x"
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("ALTER ROLE piper_app PASSWORD {}").format(psycopg.sql.Literal(password)))
    envfile.update(project.env_file, {"PIPER_TESTER_APP_PASSWORD": password})
    assert connection_info.select_in_env_file(profile, project) == [
        f"wrote DATABASE_URL (the application role, postgresql://piper_app:***@127.0.0.1:"
        f"{servers.locate(profile, project).port}/piper_tester) in .env"]
    url = _env(project)["DATABASE_URL"]
    assert password not in url and "p%40ss%3Aw%2Frd%25%23%3F%26%3D%20%C3%A4%22x" in url
    assert _who(url)[0] == "piper_app"
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == "piper_app"
    engine.dispose()


def test_variables_hide_the_password_unless_asked(alpha_env) -> None:
    profile, project = alpha_env
    info = connection_info.connection_info(profile, project)
    password = _env(project)["PIPER_ALPHA_APP_PASSWORD"]
    hidden = info.variables(show_password=False)
    assert "PGPASSWORD" not in hidden and password not in "".join(hidden.values())
    assert hidden["DATABASE_URL"].startswith("postgresql://piper_app:***@127.0.0.1:")
    shown = info.variables(show_password=True)
    assert shown["PGPASSWORD"] == password and shown["DATABASE_URL"] == _env(project)["DATABASE_URL"]
    assert (shown["PGHOST"], shown["PGDATABASE"], shown["PGUSER"]) == ("127.0.0.1", "piper_alpha", "piper_app")
    owner = connection_info.connection_info(profile, project, "owner").variables(show_password=True)
    assert _who(owner["DATABASE_URL"])[0] == "piper_owner"
    with pytest.raises(UsageError, match="unknown role 'admin'"):
        connection_info.connection_info(profile, project, "admin")


def test_shell_format_survives_eval_whatever_the_value() -> None:
    hostile = {"DATABASE_URL": "postgresql://u:'; rm -rf / #$(id)`id`\"@h:1/d", "PGHOST": "a b\nc", "PGUSER": ""}
    rendered = connection_info.render(hostile, "shell")
    printed = subprocess.run(["bash", "-c", rendered + 'printf "%s\\0" "$DATABASE_URL" "$PGHOST" "$PGUSER"'],
                             capture_output=True, text=True, check=True).stdout
    assert printed.split("\0")[:3] == list(hostile.values())


def test_hosted_production_takes_its_url_from_the_variable_the_profile_names(project: Project, monkeypatch) -> None:
    production = load_profile("production", project)
    assert connection_info.application_url(production, project) is None
    assert connection_info.select_in_env_file(production, project)[0] == "selected production in .env"
    assert "DATABASE_URL" not in _env(project)
    monkeypatch.setenv("PIPER_PRODUCTION_APP_DATABASE_URL", "postgresql://piper_app:s%40cret@db.example.invalid/piper")
    url = connection_info.application_url(production, project)
    assert url == "postgresql://piper_app:s%40cret@db.example.invalid/piper?sslmode=verify-full"
    info = connection_info.connection_info(production, project)
    assert (info.host, info.port, info.dbname, info.password, info.sslmode) == (
        "db.example.invalid", None, "piper", "s@cret", "verify-full")
    assert info.variables(show_password=False)["DATABASE_URL"].startswith("postgresql://piper_app:***@db.example")
    monkeypatch.setenv("PIPER_PRODUCTION_APP_DATABASE_URL",
                       "postgresql://piper_app:x@db.example.invalid/p?sslmode=disable")
    with pytest.raises(UsageError, match="requires TLS"):
        connection_info.application_url(production, project)


def test_a_server_on_its_socket_only_gets_a_socket_url_and_no_tcp(tmp_path, monkeypatch) -> None:
    project = make_project(tmp_path / "proj", {"alpha": {"database": {"listen_addresses": ""}}})
    monkeypatch.setenv("PIPER_ROOT", str(project.root))
    try:
        profile = load_profile("alpha", project)
        set_up(profile, project)
        server = servers.locate(profile, project)
        url = _env(project)["DATABASE_URL"]
        assert url.startswith("postgresql://piper_app:") and "/piper_alpha?host=%2F" in url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user, inet_server_addr()").fetchone() == ("piper_app", None)
        engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "piper_app"
        engine.dispose()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"postgresql://piper_app@127.0.0.1:{server.port}/piper_alpha", connect_timeout=5).close()
    finally:
        remove_servers(project)


def test_a_server_restarted_on_a_new_port_is_noticed_and_refreshed(fresh_tester) -> None:
    profile, project = fresh_tester
    port = free_port()
    envfile.update(project.env_file, {"PIPER_TESTER_PORT": str(port)})
    profile = load_profile("tester", project)
    lifecycle.stop_environment(profile, project)
    # The server stopped, .env's URL still names the old port: noticed, the password never shown.
    warning = connection_info.stale_env_file_url(profile, project)
    assert warning is not None and f"127.0.0.1:{port}/piper_tester" in warning
    assert "invoke setup --env tester" in warning
    assert _env(project)["PIPER_TESTER_APP_PASSWORD"] not in warning
    # db-start, on the new port, writes the URL again.
    lifecycle.start_environment(profile, project)
    assert f"@127.0.0.1:{port}/piper_tester" in _env(project)["DATABASE_URL"]
    assert connection_info.stale_env_file_url(profile, project) is None
    assert connection_info.refresh_in_env_file(profile, project) == []  # nothing left to write
    assert _who(_env(project)["DATABASE_URL"])[0] == "piper_app"
    assert connection_info.refresh_in_env_file(load_profile("alpha", project), project) == []  # not the selected one


def test_hosted_database_url_connects_with_verified_tls(hosted, monkeypatch) -> None:
    production, project, urls = hosted
    for key, value in urls.items():
        monkeypatch.setenv(key, value)
    url = connection_info.application_url(production, project)
    assert url is not None and url.startswith(urls["PIPER_PRODUCTION_APP_DATABASE_URL"])
    assert "sslmode=verify-full" in url
    with psycopg.connect(url, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("piper_app", "piper_production")
        assert conn.info.pgconn.ssl_in_use
    owner = connection_info.connection_info(production, project, "owner").variables(show_password=True)
    assert owner["PGSSLMODE"] == "verify-full" and owner["PGUSER"] == "piper_owner"
    with psycopg.connect(owner["DATABASE_URL"], connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("piper_owner",)
