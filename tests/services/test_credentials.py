"""services/credentials.py: a profile and the project's secrets become a connection target."""

from __future__ import annotations

import pytest

from services import credentials, envfile
from services.errors import UsageError
from services.postgres import servers
from services.profiles import load_profile
from services.project import Project

SECRET = "s3cret-Pw-for-tests"


def test_a_local_target_is_the_private_socket_with_the_password_from_env(project: Project, monkeypatch) -> None:
    alpha = load_profile("alpha", project)
    envfile.update(project.env_file, {"PIPER_ALPHA_OWNER_PASSWORD": "from-the-file"})
    target = credentials.target(alpha, project, "owner")
    assert (target.host, target.port, target.dbname, target.user, target.password) == (
        str(servers.locate(alpha, project).socket_dir), alpha.database.port, "piper_alpha", "piper_owner", "from-the-file")
    assert credentials.target(alpha, project, "owner", dbname="postgres", socket_dir="/elsewhere").host == "/elsewhere"
    monkeypatch.setenv("PIPER_ALPHA_OWNER_PASSWORD", "from-the-shell")  # the process environment wins
    assert credentials.target(alpha, project, "owner").password == "from-the-shell"
    assert credentials.password_key("alpha", "owner") == "PIPER_ALPHA_OWNER_PASSWORD"


def test_a_missing_password_names_the_file_the_key_and_the_fix(project: Project) -> None:
    with pytest.raises(UsageError) as caught:
        credentials.target(load_profile("tester", project), project, "app")
    assert str(caught.value) == (f"{project.env_file} holds no PIPER_TESTER_APP_PASSWORD for environment 'tester'; "
                                 "run `invoke setup --env tester`, or restore .env from your backup")


def test_hosted_roles_come_from_their_own_urls(project: Project, monkeypatch) -> None:
    production = load_profile("production", project)
    with pytest.raises(UsageError, match="environment 'production' is hosted and PIPER_PRODUCTION_DATABASE_URL is not set"):
        credentials.target(production, project, "owner")
    monkeypatch.setenv("PIPER_PRODUCTION_DATABASE_URL", f"postgresql://piper_owner:{SECRET}@db.example.invalid/piper_production")
    owner = credentials.target(production, project, "owner")
    assert (owner.user, owner.sslmode, owner.url_env) == ("piper_owner", "verify-full", "PIPER_PRODUCTION_DATABASE_URL")
    with pytest.raises(UsageError, match="PIPER_PRODUCTION_APP_DATABASE_URL is not set"):
        credentials.target(production, project, "app")  # never the owner's URL, which bypasses row-level security
    envfile.update(project.env_file, {"PIPER_PRODUCTION_APP_DATABASE_URL": f"postgresql://piper_app:{SECRET}@db.example.invalid/x"})
    app = credentials.target(production, project, "app")
    assert (app.user, app.dbname, app.url_env) == ("piper_app", "x", "PIPER_PRODUCTION_APP_DATABASE_URL")


def test_hosted_tls_is_required_and_a_bad_url_is_one_line_without_the_password(project: Project, monkeypatch) -> None:
    production = load_profile("production", project)
    monkeypatch.setenv("PIPER_PRODUCTION_DATABASE_URL", f"postgresql://u:{SECRET}@127.0.0.1:5/piper?sslmode=disable")
    with pytest.raises(UsageError) as refused:
        credentials.target(production, project, "owner")
    assert "asks for sslmode=disable, but environment 'production' requires TLS; use sslmode=verify-full" in str(refused.value)
    monkeypatch.setenv("PIPER_PRODUCTION_DATABASE_URL", f"postgresql://u:{SECRET}@[127.0.0.1/piper")
    with pytest.raises(UsageError) as bad:
        credentials.target(production, project, "owner")
    for message in (str(refused.value), str(bad.value)):
        assert SECRET not in message and "\n" not in message
    assert str(bad.value).startswith("PIPER_PRODUCTION_DATABASE_URL is not a valid PostgreSQL URL")
