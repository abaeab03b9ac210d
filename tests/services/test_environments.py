"""setup, status and teardown of whole environments, on real servers."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from services import credentials, envfile, migrations
from services.database import connection
from services.environments import lifecycle
from services.environments import setup as env_setup
from services.environments import status as env_status
from services.errors import (
    ConfirmationRequired,
    EnvironmentMismatchError,
    PiperError,
    UsageError,
)
from services.postgres import data_dirs, servers
from services.profiles import load_profile
from services.project import CODE_ROOT, Project
from tests.conftest import make_project, remove_servers, set_up

HEAD = migrations.head_revision(Project(CODE_ROOT))


def _query(profile, project, sql: str, role: str = "owner"):
    with connection.connect(credentials.target(profile, project, role)) as conn:  # type: ignore[arg-type]
        return conn.execute(sql).fetchall()


def test_setup_creates_a_migrated_stamped_database_with_its_default_user(alpha_env) -> None:
    profile, project = alpha_env
    assert _query(profile, project, "SELECT value FROM piper_metadata WHERE key = 'environment'") == [("alpha",)]
    assert _query(profile, project, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert _query(profile, project, "SELECT username, email FROM alpha_users WHERE username = 'alfy'") == [
        ("alfy", "alfy@example.invalid")
    ]
    assert _query(profile, project, "SELECT current_database(), current_user", role="app") == [("piper_alpha", "piper_app")]
    env_file = project.env_file
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = envfile.read(env_file)
    assert values["PIPER_ENV"] == "alpha"
    assert {k for k in values if k.startswith("PIPER_ALPHA_")} == {
        "PIPER_ALPHA_ADMIN_PASSWORD", "PIPER_ALPHA_OWNER_PASSWORD", "PIPER_ALPHA_APP_PASSWORD"}
    assert stat.S_IMODE(project.data_root.stat().st_mode) == 0o700
    # Copied from the template cluster, whose throwaway superuser password is gone once replaced.
    server = servers.locate(profile, project)
    assert data_dirs.initial_password(server) is None
    assert _query(profile, project, "SELECT current_user", role="admin") == [("piper_admin",)]


def test_the_application_role_cannot_change_the_stamp(alpha_env) -> None:
    import psycopg

    profile, project = alpha_env
    with connection.connect(credentials.target(profile, project, "app")) as conn:
        assert conn.execute("SELECT value FROM piper_metadata").fetchall() == [("alpha",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE piper_metadata SET value = 'dev'")


def test_a_second_setup_changes_nothing(alpha_env) -> None:
    profile, project = alpha_env
    before = _query(profile, project, "SELECT id, updated_at FROM alpha_users")
    env_before = project.env_file.read_bytes()
    report = set_up(profile, project)
    assert report.changes == []
    assert _query(profile, project, "SELECT id, updated_at FROM alpha_users") == before
    assert project.env_file.read_bytes() == env_before


def test_three_environments_side_by_side_never_share_anything(project: Project) -> None:
    profiles = [load_profile(name, project) for name in ("dev", "alpha", "tester")]
    for profile in profiles:
        set_up(profile, project)
    located = [servers.locate(p, project) for p in profiles]
    assert len({s.data_dir for s in located}) == len({s.port for s in located}) == len({s.socket_dir for s in located}) == 3
    pids = {servers.state(s).pid for s in located}
    assert len(pids) == 3 and None not in pids
    for profile in profiles:
        rows = _query(profile, project, "SELECT current_database(), (SELECT value FROM piper_metadata), "
                                        "(SELECT string_agg(username, ',') FROM alpha_users)")
        assert rows == [(profile.database.name, profile.name, profile.default_user.username)]
    statuses = {s.name: s for s in env_status.environment_statuses(project)}
    assert all(statuses[p.name].running and statuses[p.name].users == 1 for p in profiles)
    assert statuses["tester"].selected  # the last setup selects its environment


def test_a_database_stamped_for_another_environment_is_refused(project: Project) -> None:
    alpha = load_profile("alpha", project)
    set_up(alpha, project)
    # A dev profile that (by mistake) points at alpha's server and database.
    text = (project.environments_dir / "dev.yaml").read_text()
    text = text.replace("name: piper_dev", "name: piper_alpha").replace("postgres_data/dev", "postgres_data/alpha")
    text = text.replace(f"port: {load_profile('dev', project).database.port}", f"port: {alpha.database.port}")
    (project.environments_dir / "dev.yaml").write_text(text)
    secrets = envfile.read(project.env_file)
    envfile.update(project.env_file, {k.replace("ALPHA", "DEV"): v for k, v in secrets.items() if k.startswith("PIPER_ALPHA_")})
    dev = load_profile("dev", project)
    with pytest.raises(EnvironmentMismatchError) as caught:
        set_up(dev, project)
    assert "stamped for environment 'alpha', not 'dev'" in str(caught.value)
    assert _query(alpha, project, "SELECT value FROM piper_metadata") == [("alpha",)]


def test_teardown_refuses_protected_and_unconfirmed_then_removes_everything(project: Project) -> None:
    with pytest.raises(PiperError, match="protected"):
        lifecycle.teardown_environment(load_profile("production", project), project, confirmed=True)
    profile = load_profile("tester", project)
    set_up(profile, project)
    server = servers.locate(profile, project)
    with pytest.raises(ConfirmationRequired):
        lifecycle.teardown_environment(profile, project, confirmed=False)
    assert servers.state(server).running
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        conn.execute("UPDATE alpha_users SET notes = 'kept in the backup' WHERE username = 'tester123'")
        conn.commit()
    result = lifecycle.teardown_environment(profile, project, confirmed=True)
    removed = result.data_dir
    assert removed == server.project_data_dir
    assert not removed.exists() and not removed.is_symlink() and not server.data_dir.exists()
    # The backup came first: a verified pg_dump archive, private, holding the data.
    assert result.backup is not None and result.backup.parent == project.root / "backups" / "tester"
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(result.backup.parent.stat().st_mode) == 0o700
    listing = subprocess.run([str(server.bin_dir / "pg_restore"), "--data-only", "--table=alpha_users", "--file=-",
                              str(result.backup)], capture_output=True, text=True, check=True).stdout
    assert "kept in the backup" in listing
    assert not [k for k in envfile.read(project.env_file) if k.startswith("PIPER_TESTER_") or k == "PIPER_ENV"]


def test_branch_guard_warns_by_default_and_refuses_when_the_profile_says_so(tmp_path, monkeypatch) -> None:
    project = make_project(tmp_path / "proj", {"tester": {"branch_policy": "refuse"}})
    subprocess.run(["git", "init", "-q", "-b", "main", str(project.root)], check=True)
    alpha, tester = load_profile("alpha", project), load_profile("tester", project)
    warning = env_setup.check_branch(alpha, project, allow_mismatch=False)
    assert warning is not None and "branch 'main'" in warning and "expects 'production'" in warning
    with pytest.raises(PiperError, match="pass --allow-branch-mismatch"):
        env_setup.setup_environment(tester, project)
    assert not (project.root / "postgres_data" / "tester").exists()
    assert env_setup.check_branch(tester, project, allow_mismatch=True) is not None
    assert env_setup.check_branch(load_profile("dev", project), project, allow_mismatch=False) is None
    # A detached HEAD (as in CI) is no branch at all: a profile that refuses still refuses.
    git = ["git", "-C", str(project.root), "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    subprocess.run([*git, "checkout", "-q", "--detach"], check=True)
    with pytest.raises(PiperError, match=r"on branch '\(detached HEAD\)' but environment 'tester' expects"):
        env_setup.setup_environment(tester, project)


def test_setup_sets_new_passwords_when_env_file_lost_the_owner_and_app_ones(project: Project) -> None:
    profile = load_profile("tester", project)
    set_up(profile, project)
    envfile.update(project.env_file, {"PIPER_TESTER_OWNER_PASSWORD": None, "PIPER_TESTER_APP_PASSWORD": None})
    report = set_up(profile, project)
    assert "set the new password of role piper_owner" in report.changes
    assert "set the new password of role piper_app" in report.changes
    for role in ("owner", "app"):
        with connection.connect(credentials.target(profile, project, role)) as conn:  # type: ignore[arg-type]
            assert conn.execute("SELECT current_user").fetchone() == (f"piper_{role}",)
    assert set_up(profile, project).changes == []


def test_setup_refuses_when_env_file_lost_the_passwords_and_teardown_still_keeps_a_copy(project: Project) -> None:
    import tarfile

    profile = load_profile("tester", project)
    set_up(profile, project)
    envfile.update(project.env_file, {f"PIPER_TESTER_{r}_PASSWORD": None for r in ("ADMIN", "OWNER", "APP")})
    with pytest.raises(UsageError, match="holds no PIPER_TESTER_ADMIN_PASSWORD"):
        set_up(profile, project)
    server = servers.locate(profile, project)
    assert servers.state(server).initialized
    # The way out: teardown, which cannot dump without a password, archives the files instead.
    result = lifecycle.teardown_environment(profile, project, confirmed=True)
    assert result.backup is not None and result.backup.name.endswith(".tar.gz")
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o600
    with tarfile.open(result.backup) as archive:
        assert "tester/PG_VERSION" in archive.getnames()
    assert not server.project_data_dir.exists()
    set_up(profile, project)  # and a fresh start works


def test_hosted_production_without_its_url_stops_before_touching_anything(project: Project) -> None:
    profile = load_profile("production", project)
    with pytest.raises(UsageError, match="PIPER_PRODUCTION_DATABASE_URL is not set"):
        env_setup.setup_environment(profile, project)
    assert not (project.root / "postgres_data" / "production").exists()


def test_hosted_production_refuses_a_plain_connection(project: Project, monkeypatch) -> None:
    monkeypatch.setenv("PIPER_PRODUCTION_DATABASE_URL", "postgresql://u:pw@127.0.0.1:5/piper?sslmode=disable")
    with pytest.raises(UsageError, match="sslmode=disable.*requires TLS"):
        env_setup.setup_environment(load_profile("production", project), project)


def test_hosted_production_is_migrated_and_stamped_but_never_provisioned(project: Project, monkeypatch) -> None:
    # A stand-in for the hosted server: the tester server, reached by URL with TLS it does not offer.
    tester = load_profile("tester", project)
    set_up(tester, project)
    secret = envfile.read(project.env_file)["PIPER_TESTER_OWNER_PASSWORD"]
    server = servers.locate(tester, project)
    monkeypatch.setenv("PIPER_PRODUCTION_DATABASE_URL",
                       f"postgresql://piper_owner:{secret}@127.0.0.1:{server.port}/piper_tester")
    with pytest.raises(PiperError) as caught:
        env_setup.setup_environment(load_profile("production", project), project, allow_branch_mismatch=True)
    # verify-full by default: a server without TLS is refused, and the password never shows.
    assert "SSL" in str(caught.value) or "ssl" in str(caught.value)
    assert secret not in str(caught.value)
    assert not (project.root / "postgres_data" / "production").exists()
    assert _query(tester, project, "SELECT value FROM piper_metadata") == [("tester",)]


def test_status_reports_every_environment(alpha_env) -> None:
    profile, project = alpha_env
    rows = {row.name: row for row in env_status.environment_statuses(project)}
    assert sorted(rows) == ["alpha", "dev", "production", "tester"]
    alpha = rows["alpha"]
    users = _query(profile, project, "SELECT count(*) FROM alpha_users")[0][0]
    assert users >= 1
    assert (alpha.running, alpha.stamp, alpha.revision, alpha.head, alpha.users) == (True, "alpha", HEAD, HEAD, users)
    assert alpha.selected and alpha.branch_expected == "production"
    assert not rows["dev"].initialized and not rows["dev"].running
    assert rows["production"].server == "hosted" and rows["production"].problem is None
    assert rows["production"].location == "not configured ($PIPER_PRODUCTION_DATABASE_URL is not set)"
    assert os.environ.get("PIPER_PRODUCTION_DATABASE_URL") is None


def test_fixture_projects_are_removed(tmp_path) -> None:
    project = make_project(tmp_path / "p")
    profile = load_profile("alpha", project)
    set_up(profile, project)
    data = servers.locate(profile, project).data_dir
    remove_servers(project)
    assert not data.exists()


def test_hosted_production_over_tls_is_stamped_and_reported(production_env) -> None:
    profile, project = production_env
    owner = credentials.target(profile, project, "owner")
    assert owner.sslmode == "verify-full"
    with connection.connect(owner) as conn:
        assert conn.execute("SELECT value FROM piper_metadata WHERE key = 'environment'").fetchone() == ("production",)
        assert conn.info.pgconn.ssl_in_use
    rows = {row.name: row for row in env_status.environment_statuses(project)}
    assert rows["production"].stamp == "production" and rows["production"].revision == HEAD
    with connection.connect(owner) as conn:
        assert rows["production"].users == conn.execute("SELECT count(*) FROM users").fetchone()[0]
    assert not (project.root / "postgres_data" / "production").exists()
    # A second setup finds everything in place.
    assert env_setup.setup_environment(profile, project, allow_branch_mismatch=True).changes[:1] != ["migrated"]


def test_hosted_production_refuses_a_server_whose_certificate_it_cannot_verify(production_env, monkeypatch, tmp_path) -> None:
    profile, project = production_env
    import os

    url = os.environ["PIPER_PRODUCTION_DATABASE_URL"]
    other = tmp_path / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(other)], check=True, capture_output=True)
    monkeypatch.setenv("PIPER_PRODUCTION_DATABASE_URL", url.split("?")[0] + f"?sslrootcert={other}")
    with pytest.raises(PiperError, match="certificate verify failed"):
        env_setup.setup_environment(profile, project, allow_branch_mismatch=True)


def test_teardown_never_deletes_a_directory_that_is_not_its_cluster(project: Project) -> None:
    from services.errors import ClusterError

    stranger = project.root / "postgres_data" / "tester"
    stranger.mkdir(parents=True)
    (stranger / "notes.txt").write_text("not a database")
    with pytest.raises(ClusterError, match="is not a PostgreSQL data directory; piper-ops deletes only its own"):
        lifecycle.teardown_environment(load_profile("tester", project), project, confirmed=True)
    assert (stranger / "notes.txt").read_text() == "not a database"
