"""services/environments/access.py: whoever owns an environment's data directory is never locked out."""

from __future__ import annotations

import shutil

import pytest

from services import credentials, envfile
from services.database import connection
from services.environments import status
from services.postgres import data_dirs, server_account, servers, templates
from tests.support.databases import query, set_preferences
from tests.support.projects import set_up

ROLES = ("ADMIN", "OWNER", "APP")


def _passwords(project, name: str) -> dict[str, str]:
    return {k: v for k, v in envfile.read(project.env_file).items() if k.startswith(f"PIPER_{name}_")}


def _every_role_connects(profile, project) -> None:
    for role, dbname in (("admin", "postgres"), ("owner", None), ("app", None)):
        with connection.connect(credentials.target(profile, project, role, dbname=dbname)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_setup_gets_back_in_when_env_lost_every_password_and_keeps_the_data(fresh_alpha) -> None:
    profile, project = fresh_alpha
    set_preferences(profile, project, "alfy", {"tone": "kept"})
    before = _passwords(project, "ALPHA")
    envfile.update(project.env_file, {f"PIPER_ALPHA_{r}_PASSWORD": None for r in ROLES})
    report = set_up(profile, project)
    assert any("reset the password of piper_admin" in change for change in report.changes)
    after = _passwords(project, "ALPHA")
    assert set(after) == set(before) and not set(after.values()) & set(before.values())
    _every_role_connects(profile, project)
    assert query(profile, project, "SELECT preferences->>'tone' FROM alpha_users WHERE username = 'alfy'") == [("kept",)]
    server = servers.locate(profile, project)
    log = server.log_file.read_text(errors="replace")
    assert not any(secret in log for secret in [*after.values(), *before.values()])
    assert set_up(profile, project).changes == []  # and then it is in place


def test_setup_gets_back_in_with_a_stale_copy_of_env(fresh_alpha, tmp_path) -> None:
    profile, project = fresh_alpha
    old = tmp_path / "old.env"
    shutil.copy(project.env_file, old)
    envfile.update(project.env_file, {f"PIPER_ALPHA_{r}_PASSWORD": None for r in ROLES})
    set_up(profile, project)  # the server now has new passwords; the copy is stale
    shutil.copy(old, project.env_file)
    report = set_up(profile, project)
    assert any("reset the password of piper_admin" in change for change in report.changes)
    _every_role_connects(profile, project)


def test_only_a_stale_application_password_is_put_right_alone(fresh_alpha) -> None:
    profile, project = fresh_alpha
    envfile.update(project.env_file, {"PIPER_ALPHA_APP_PASSWORD": "stale-fake-password"})
    report = set_up(profile, project)
    assert "set the new password of role piper_app" in report.changes
    assert not any("piper_admin" in change or "piper_owner" in change for change in report.changes)
    _every_role_connects(profile, project)


def test_a_setup_killed_after_the_superuser_password_changed_is_finished_by_the_next(fresh_alpha) -> None:
    profile, project = fresh_alpha
    server = servers.locate(profile, project)
    # What a setup killed between the password change and removing the throwaway file leaves.
    leftover = server.data_dir / templates.INITIAL_PASSWORD_FILE
    leftover.write_text("fake-throwaway-password\n")
    report = set_up(profile, project)
    assert not leftover.exists() and data_dirs.initial_password(server) is None
    assert not any("reset the password" in change for change in report.changes)
    _every_role_connects(profile, project)


@pytest.mark.skipif(not server_account.needed(), reason="clusters live apart from the checkout only as root")
def test_a_checkout_cloned_anew_at_the_same_path_adopts_its_cluster_and_status_shows_orphans(fresh_alpha) -> None:
    profile, project = fresh_alpha
    set_preferences(profile, project, "alfy", {"tone": "kept"})
    server = servers.locate(profile, project)
    servers.stop(server)
    # A new clone at the same path: no postgres_data/ link and no .env; the cluster stays in /var/lib/piper-ops.
    server.project_data_dir.unlink()
    project.env_file.unlink()
    orphans = [o for o in status.orphaned_clusters() if o.path == server.data_dir]
    assert [(o.environment, o.project_data_dir) for o in orphans] == [("alpha", server.project_data_dir.absolute())]
    report = set_up(profile, project)
    assert any("reset the password of piper_admin" in change for change in report.changes)
    assert query(profile, project, "SELECT preferences->>'tone' FROM alpha_users WHERE username = 'alfy'") == [("kept",)]
    assert not [o for o in status.orphaned_clusters() if o.path == server.data_dir]
