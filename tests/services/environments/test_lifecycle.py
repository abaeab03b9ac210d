"""services/environments/lifecycle.py: teardown on real servers (backups: tests/services/test_db_backups.py)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from services import credentials, envfile
from services.database import connection
from services.environments import lifecycle
from services.errors import ClusterError, ConfirmationRequired, PiperError
from services.postgres import servers
from services.profiles import load_profile
from services.project import Project
from tests.support.projects import set_up


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


def test_teardown_with_lost_passwords_still_takes_a_restorable_archive(fresh_tester) -> None:
    profile, project = fresh_tester
    envfile.update(project.env_file, {f"PIPER_TESTER_{r}_PASSWORD": None for r in ("ADMIN", "OWNER", "APP")})
    server = servers.locate(profile, project)
    # No password is left, yet the backup is a pg_dump archive: access is won back first (access.py).
    result = lifecycle.teardown_environment(profile, project, confirmed=True)
    assert result.backup is not None and result.backup.name.endswith(".dump")
    listing = subprocess.run([str(server.bin_dir / "pg_restore"), "--data-only", "--table=alpha_users", "--file=-",
                              str(result.backup)], capture_output=True, text=True, check=True).stdout
    assert "tester123" in listing
    assert not server.project_data_dir.exists()
    set_up(profile, project)  # and a fresh start works


def test_a_teardown_killed_after_renaming_aside_is_finished_by_the_next_setup(fresh_tester) -> None:
    profile, project = fresh_tester
    server = servers.locate(profile, project)
    servers.stop(server)
    # What a teardown killed between its rename and its delete leaves: the cluster set aside.
    aside = server.data_dir.with_name(f".{server.data_dir.name}.deleting-999999")
    os.rename(server.data_dir, aside)
    if server.project_data_dir.is_symlink():
        server.project_data_dir.unlink()
    report = set_up(profile, project)
    assert not aside.exists()
    assert any("created a PostgreSQL server" in change for change in report.changes)


def test_teardown_never_deletes_a_directory_that_is_not_its_cluster(project: Project) -> None:
    stranger = project.root / "postgres_data" / "tester"
    stranger.mkdir(parents=True)
    (stranger / "notes.txt").write_text("not a database")
    with pytest.raises(ClusterError, match="is not a PostgreSQL data directory; piper-ops deletes only its own"):
        lifecycle.teardown_environment(load_profile("tester", project), project, confirmed=True)
    assert (stranger / "notes.txt").read_text() == "not a database"


def test_stop_and_start_hold_the_environment_and_say_what_changed(fresh_tester) -> None:
    profile, project = fresh_tester
    assert lifecycle.stop_environment(profile, project) is True
    assert lifecycle.stop_environment(profile, project) is False  # it was not running
    state = lifecycle.start_environment(profile, project)
    assert state.running and state.pid is not None
    assert lifecycle.start_environment(profile, project).pid == state.pid  # already running: left alone
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT username FROM alpha_users").fetchall() == [("tester123",)]
