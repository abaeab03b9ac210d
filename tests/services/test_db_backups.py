"""services/db_backups.py, through the environment's backup and restore (services/environments/lifecycle.py),
on real servers: verified archives, rotation, restores that are all or nothing, and archives of another
environment refused unless named. Each test restores or rotates, so each has an environment of its own.
(The db-backup and db-restore commands: tests/scripts/test_environments.py.)"""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest

from services import credentials, db_backups
from services.database import connection
from services.environments import lifecycle
from services.errors import (
    ClusterError,
    ConfirmationRequired,
    EnvironmentMismatchError,
    PiperError,
    UsageError,
)
from services.profiles import load_profile
from services.project import Project
from tests.support.projects import set_up


def _notes(profile, project) -> list[tuple]:
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        return conn.execute("SELECT username, notes FROM alpha_users ORDER BY username").fetchall()


def _set_notes(profile, project, text: str) -> None:
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        conn.execute("UPDATE alpha_users SET notes = %s", (text,))
        conn.commit()


def test_backup_then_restore_brings_the_data_back_and_keeps_what_was_replaced(fresh_tester) -> None:
    profile, project = fresh_tester
    _set_notes(profile, project, "version one")
    taken = lifecycle.backup_environment(profile, project).archive
    assert stat.S_IMODE(taken.stat().st_mode) == 0o600 and stat.S_IMODE(taken.parent.stat().st_mode) == 0o700
    assert [b.path for b in db_backups.list_backups(profile, project)] == [taken]
    _set_notes(profile, project, "version two")
    with pytest.raises(ConfirmationRequired):
        lifecycle.restore_environment(profile, project, taken, confirmed=False)
    result = lifecycle.restore_environment(profile, project, taken, confirmed=True)
    assert _notes(profile, project) == [("tester123", "version one")]
    # What the restore replaced was backed up first, and that backup holds "version two".
    assert result.backup_before != taken and result.backup_before.exists()
    lifecycle.restore_environment(profile, project, result.backup_before, confirmed=True)
    assert _notes(profile, project) == [("tester123", "version two")]
    # The restored database keeps its stamp, its row-level security and the app role's limits.
    with connection.connect(credentials.target(profile, project, "app")) as conn:
        assert conn.execute("SELECT count(*) FROM alpha_users").fetchone() == (0,)
        assert conn.execute("SELECT value FROM piper_metadata").fetchone() == ("tester",)


def test_a_damaged_archive_changes_nothing(fresh_tester, tmp_path) -> None:
    profile, project = fresh_tester
    _set_notes(profile, project, "still here")
    good = lifecycle.backup_environment(profile, project).archive
    damaged = tmp_path / "tester-piper_tester-20260101T000000000000Z.dump"
    raw = good.read_bytes()
    damaged.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PiperError):
        lifecycle.restore_environment(profile, project, damaged, confirmed=True)
    assert _notes(profile, project) == [("tester123", "still here")]


def test_an_archive_of_another_environment_is_refused_unless_named(project: Project) -> None:
    alpha, tester = load_profile("alpha", project), load_profile("tester", project)
    set_up(alpha, project)
    set_up(tester, project)
    archive = lifecycle.backup_environment(alpha, project).archive
    with pytest.raises(EnvironmentMismatchError, match="is a backup of environment 'alpha', not 'tester'; pass --from-env alpha"):
        lifecycle.restore_environment(tester, project, archive, confirmed=True)
    assert _notes(tester, project) == [("tester123", None)]
    lifecycle.restore_environment(tester, project, archive, from_env="alpha", confirmed=True)
    assert _notes(tester, project) == [("alfy", None)]
    with connection.connect(credentials.target(tester, project, "owner")) as conn:
        assert conn.execute("SELECT value FROM piper_metadata").fetchone() == ("tester",)


def test_rotation_keeps_the_policy_and_never_the_newest(fresh_tester) -> None:
    profile, project = fresh_tester
    folder = db_backups.backup_dir(profile, project)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(20):  # twenty daily archives from January
        moment = start + timedelta(days=day)
        (folder / f"tester-piper_tester-{moment:%Y%m%dT%H%M%S%f}Z.dump").write_bytes(b"old")
    result = lifecycle.backup_environment(profile, project)
    kept = db_backups.list_backups(profile, project)
    assert kept[0].path == result.archive
    policy = profile.backups
    assert len(kept) <= policy.keep_last + policy.keep_daily + policy.keep_weekly
    assert len(result.rotated_out) == 21 - len(kept) > 0
    assert all(not path.exists() for path in result.rotated_out)


def test_restore_without_backups_and_protected_environments_are_refused(project: Project) -> None:
    tester = load_profile("tester", project)
    set_up(tester, project)
    with pytest.raises(UsageError, match="has no backups in backups/tester/"):
        lifecycle.restore_environment(tester, project, confirmed=True)
    with pytest.raises(PiperError, match="is protected"):
        lifecycle.restore_environment(load_profile("production", project), project, confirmed=True)
    with pytest.raises(ClusterError, match="hosted"):
        lifecycle.backup_environment(load_profile("production", project), project)
