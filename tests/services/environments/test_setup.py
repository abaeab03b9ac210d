"""services/environments/setup.py: `invoke setup` on real servers, local and hosted (TLS)."""

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
from services.errors import ClusterError, PiperError, ProfileError, UsageError
from services.postgres import data_dirs, servers
from services.profiles import load_profile
from services.project import CODE_ROOT, Project
from tests.support.databases import query
from tests.support.projects import make_project, set_up

HEAD = migrations.head_revision(Project(CODE_ROOT))


def test_setup_creates_a_migrated_stamped_database_with_its_default_user(alpha_env) -> None:
    profile, project = alpha_env
    assert query(profile, project, "SELECT value FROM piper_metadata WHERE key = 'environment'") == [("alpha",)]
    assert query(profile, project, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert query(profile, project, "SELECT username, email FROM alpha_users WHERE username = 'alfy'") == [
        ("alfy", "alfy@example.invalid")
    ]
    assert query(profile, project, "SELECT current_database(), current_user", role="app") == [("piper_alpha", "piper_app")]
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
    assert query(profile, project, "SELECT current_user", role="admin") == [("piper_admin",)]


def test_a_second_setup_changes_nothing(alpha_env) -> None:
    profile, project = alpha_env
    before = query(profile, project, "SELECT id, updated_at FROM alpha_users")
    env_before = project.env_file.read_bytes()
    report = set_up(profile, project)
    assert report.changes == []
    assert query(profile, project, "SELECT id, updated_at FROM alpha_users") == before
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
        rows = query(profile, project, "SELECT current_database(), (SELECT value FROM piper_metadata), "
                                       "(SELECT string_agg(username, ',') FROM alpha_users)")
        assert rows == [(profile.database.name, profile.name, profile.default_user.username)]
    statuses = {s.name: s for s in env_status.environment_statuses(project)}
    assert all(statuses[p.name].running and statuses[p.name].users == 1 for p in profiles)
    assert statuses["tester"].selected  # the last setup selects its environment


def _copy_of_alpha(project: Project) -> None:
    """Make dev a copy-pasted profile that points at alpha's data directory and port."""
    alpha = load_profile("alpha", project)
    text = (project.environments_dir / "dev.yaml").read_text()
    text = text.replace("postgres_data/dev", "postgres_data/alpha")
    text = text.replace(f"port: {load_profile('dev', project).database.port}", f"port: {alpha.database.port}")
    (project.environments_dir / "dev.yaml").write_text(text)


def test_a_profile_sharing_another_environments_data_directory_or_port_is_refused(project: Project) -> None:
    alpha = load_profile("alpha", project)
    set_up(alpha, project)
    _copy_of_alpha(project)
    dev = load_profile("dev", project)
    for act in (lambda: set_up(dev, project), lambda: lifecycle.teardown_environment(dev, project, confirmed=True),
                lambda: lifecycle.stop_environment(dev, project)):
        with pytest.raises(ProfileError, match=r"dev.yaml: key 'database.data_dir' is the same as environment 'alpha'"):
            act()
    assert servers.state(servers.locate(alpha, project)).running
    assert query(alpha, project, "SELECT value FROM piper_metadata") == [("alpha",)]


def test_a_cluster_recorded_as_another_environments_is_never_touched(project: Project) -> None:
    alpha = load_profile("alpha", project)
    set_up(alpha, project)
    _copy_of_alpha(project)
    kept = (project.environments_dir / "alpha.yaml").read_text()
    (project.environments_dir / "alpha.yaml").unlink()  # nothing left to compare dev's profile with
    dev = load_profile("dev", project)
    try:
        for act in (lambda: set_up(dev, project), lambda: lifecycle.teardown_environment(dev, project, confirmed=True),
                    lambda: lifecycle.stop_environment(dev, project)):
            with pytest.raises(ClusterError, match="holds the cluster of environment 'alpha'"):
                act()
    finally:
        (project.environments_dir / "alpha.yaml").write_text(kept)  # so that the clean-up finds alpha's server
    server = servers.locate(alpha, project)
    assert servers.state(server).running and (server.data_dir / "PG_VERSION").exists()
    assert not any(k.startswith("PIPER_DEV_") for k in envfile.read(project.env_file))  # a refusal writes nothing


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


def test_setup_sets_new_passwords_when_env_file_lost_the_owner_and_app_ones(fresh_tester) -> None:
    profile, project = fresh_tester
    envfile.update(project.env_file, {"PIPER_TESTER_OWNER_PASSWORD": None, "PIPER_TESTER_APP_PASSWORD": None})
    report = set_up(profile, project)
    assert "set the new password of role piper_owner" in report.changes
    assert "set the new password of role piper_app" in report.changes
    for role in ("owner", "app"):
        with connection.connect(credentials.target(profile, project, role)) as conn:  # type: ignore[arg-type]
            assert conn.execute("SELECT current_user").fetchone() == (f"piper_{role}",)
    assert set_up(profile, project).changes == []


def test_hosted_production_without_its_url_stops_before_touching_anything(project: Project) -> None:
    profile = load_profile("production", project)
    with pytest.raises(UsageError, match="PIPER_PRODUCTION_DATABASE_URL is not set"):
        env_setup.setup_environment(profile, project)
    assert not (project.root / "postgres_data" / "production").exists()


def test_hosted_production_refuses_a_plain_connection(project: Project, monkeypatch) -> None:
    monkeypatch.setenv("PIPER_PRODUCTION_DATABASE_URL", "postgresql://u:pw@127.0.0.1:5/piper?sslmode=disable")
    with pytest.raises(UsageError, match="sslmode=disable.*requires TLS"):
        env_setup.setup_environment(load_profile("production", project), project)


def test_hosted_production_is_migrated_and_stamped_but_never_provisioned(fresh_tester, monkeypatch) -> None:
    # A stand-in for the hosted server: the tester server, reached by URL with TLS it does not offer.
    tester, project = fresh_tester
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
    assert query(tester, project, "SELECT value FROM piper_metadata") == [("tester",)]


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
    url = os.environ["PIPER_PRODUCTION_DATABASE_URL"]
    other = tmp_path / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(other)], check=True, capture_output=True)
    monkeypatch.setenv("PIPER_PRODUCTION_DATABASE_URL", url.split("?")[0] + f"?sslrootcert={other}")
    with pytest.raises(PiperError, match="certificate verify failed"):
        env_setup.setup_environment(profile, project, allow_branch_mismatch=True)
