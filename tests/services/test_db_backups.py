"""services/db_backups.py, through the environment's backup and restore (services/environments/lifecycle.py),
on real servers: verified archives, rotation, restores that are all or nothing, and archives of another
environment refused unless named. Each test restores or rotates, so each has an environment of its own.
(The db-backup and db-restore commands: tests/scripts/test_environments.py.)"""

from __future__ import annotations

import json
import stat
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from services.postgres import clients, servers
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


@pytest.mark.parametrize("cut", [0.55, 0.8, 0.95])
def test_an_archive_that_ends_part_way_commits_nothing_of_what_it_held(fresh_tester, cut: float) -> None:
    """pg_restore fails when the archive is cut short after the statements it already wrote (DROPs
    among them): psql must not commit those, nor the statements that follow a restore."""
    profile, project = fresh_tester
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        conn.execute("CREATE TABLE filler AS SELECT g AS n, repeat(md5(g::text), 20) AS pad "
                     "FROM generate_series(1, 20000) g")
        conn.commit()
    good = lifecycle.backup_environment(profile, project).archive
    _set_notes(profile, project, "the data after the backup")
    raw = good.read_bytes()
    cut_short = good.with_name(f"cut-{cut}.dump")
    cut_short.write_bytes(raw[: int(len(raw) * cut)])
    server = servers.locate(profile, project)
    owner = credentials.target(profile, project, "owner")
    with pytest.raises(ClusterError, match="nothing was changed"):
        clients.restore_database(server, profile.database.name, owner.user, owner.password, cut_short,
                                 then=["CREATE TABLE the_then_statements_ran ()"])
    assert _notes(profile, project) == [("tester123", "the data after the backup")]
    with connection.connect(owner) as conn:
        assert conn.execute("SELECT to_regclass('the_then_statements_ran')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM filler").fetchone() == (20000,)


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


# --- issue 13: kinds, what a restore picks, verification, automatic backups, progress, portability ---


def _count_users(profile, project) -> int:
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        return conn.execute("SELECT count(*) FROM alpha_users").fetchone()[0]


def test_a_restore_after_a_restore_does_not_undo_it(fresh_tester) -> None:
    profile, project = fresh_tester
    _set_notes(profile, project, "yesterday")
    wanted = lifecycle.backup_environment(profile, project).archive
    _set_notes(profile, project, "broken today")
    first = lifecycle.restore_environment(profile, project, confirmed=True)
    assert first.archive == wanted and first.before is not None and first.before.kind == "pre-restore"
    assert first.backup_before.name.endswith("-pre-restore.dump")
    # The second restore without --file takes the same manual archive, not the first restore's safety copy.
    second = lifecycle.restore_environment(profile, project, confirmed=True)
    assert second.archive == wanted
    assert _notes(profile, project) == [("tester123", "yesterday")]
    kinds = [b.kind for b in db_backups.list_backups(profile, project)]
    assert kinds == ["pre-restore", "pre-restore", "manual"]
    choice = lifecycle.choose_archive(profile, project)
    assert choice.backup.path == wanted and [b.kind for b in choice.passed_over] == ["pre-restore", "pre-restore"]
    # --pick 1 is the newest safety copy: what the last restore replaced ("yesterday" again, here).
    assert lifecycle.choose_archive(profile, project, pick=1).backup.path == second.backup_before
    # The first safety copy holds what the first restore replaced.
    lifecycle.restore_environment(profile, project, first.backup_before, confirmed=True)
    assert _notes(profile, project) == [("tester123", "broken today")]


def test_archives_named_before_kinds_are_manual_and_safety_copies_alone_are_refused(fresh_tester) -> None:
    profile, project = fresh_tester
    folder = db_backups.backup_dir(profile, project)
    (folder / "tester-piper_tester-20260101T000000000000Z.dump").write_bytes(b"old")
    (folder / "tester-piper_tester-20260102T000000000000Z-pre-teardown.dump").write_bytes(b"old")
    [safety, old] = db_backups.list_backups(profile, project)
    assert (old.kind, old.record, old.revision, old.verified) == ("manual", {}, None, None)
    assert safety.kind == "pre-teardown" and safety.safety
    assert lifecycle.choose_archive(profile, project).backup == old
    old.path.unlink()
    with pytest.raises(UsageError, match="has only safety copies in backups/tester/; choose one with --pick N"):
        lifecycle.choose_archive(profile, project)
    with pytest.raises(UsageError, match=r"--pick 3 is not in the list; choose 1 to 1"):
        lifecycle.choose_archive(profile, project, pick=3)


def test_the_record_holds_the_archives_own_rows_revision_and_client_version(fresh_tester) -> None:
    profile, project = fresh_tester
    backup = lifecycle.backup_environment(profile, project).backup
    record = db_backups.list_backups(profile, project)[0].record
    assert record == backup.record
    assert record["kind"] == "manual" and record["stamp"] == "tester" and record["format"] == "custom"
    assert record["tables"]["public.alpha_users"] == 1 and record["revision"]
    assert record["client_version"].isdigit()
    record_file = backup.path.with_name(backup.path.name + ".json")
    assert stat.S_IMODE(record_file.stat().st_mode) == 0o600


def test_verify_restore_restores_into_a_scratch_database_and_drops_it(fresh_tester) -> None:
    profile, project = fresh_tester
    lifecycle.backup_environment(profile, project)
    result = lifecycle.verify_environment(profile, project)
    assert result.ok and result.found == result.expected and result.found["public.alpha_users"] == 1
    assert result.stamp_found == "tester"
    assert db_backups.list_backups(profile, project)[0].verified["ok"] is True
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert db_backups.scratch_name(profile) not in names and profile.database.name in names


def test_verify_restore_finds_an_archive_that_does_not_hold_what_its_record_says(fresh_tester) -> None:
    profile, project = fresh_tester
    backup = lifecycle.backup_environment(profile, project).backup
    record_file = backup.path.with_name(backup.path.name + ".json")
    record = json.loads(record_file.read_text())
    record["tables"]["public.alpha_users"] = 2
    record_file.write_text(json.dumps(record))
    result = lifecycle.verify_environment(profile, project)
    assert not result.ok
    assert result.differences == ["public.alpha_users: 2 in the archive, 1 restored"]
    assert db_backups.list_backups(profile, project)[0].verified["ok"] is False


def test_verify_restore_of_an_archive_with_no_record_counts_its_data(fresh_tester) -> None:
    profile, project = fresh_tester
    backup = lifecycle.backup_environment(profile, project).backup
    backup.path.with_name(backup.path.name + ".json").unlink()
    result = lifecycle.verify_environment(profile, project)
    assert result.ok and result.expected["public.alpha_users"] == 1 and result.stamp_expected == "tester"
    assert db_backups.list_backups(profile, project)[0].revision == backup.record["revision"]


def test_a_scratch_database_left_behind_is_dropped_by_the_next_backup(fresh_tester) -> None:
    profile, project = fresh_tester
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db_backups.scratch_name(profile)}")
    assert lifecycle.backup_environment(profile, project).dropped_scratch is True
    with connection.connect(admin) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (db_backups.scratch_name(profile),)).fetchone() == (0,)


def test_automatic_backups_follow_the_policy_and_are_cheap_when_none_is_due(fresh_tester) -> None:
    profile, project = fresh_tester
    assert profile.backups.auto == "daily"
    first = lifecycle.auto_backup(profile, project)
    assert first is not None and first.backup.kind == "scheduled"
    assert lifecycle.auto_backup(profile, project) is None  # one today already
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    later = lifecycle.auto_backup(profile, project, now=tomorrow)
    assert later is not None and [b.kind for b in db_backups.list_backups(profile, project)] == ["scheduled"] * 2
    off = replace(profile, backups=replace(profile.backups, auto="off"))
    assert lifecycle.auto_backup(off, project, now=tomorrow + timedelta(days=1)) is None
    started = time.perf_counter()
    for _ in range(100):
        assert lifecycle.auto_backup(profile, project) is None
    assert (time.perf_counter() - started) / 100 < 0.010  # the check itself: names in one folder


def test_an_automatic_backup_needs_a_running_server(fresh_tester) -> None:
    profile, project = fresh_tester
    lifecycle.stop_environment(profile, project)
    assert lifecycle.auto_backup(profile, project) is None
    assert db_backups.list_backups(profile, project) == []


def test_safety_copies_are_rotated_apart_from_manual_backups(fresh_tester) -> None:
    profile, project = fresh_tester
    tight = replace(profile, backups=replace(profile.backups, keep_last=1, keep_daily=0, keep_weekly=0))
    manual = lifecycle.backup_environment(tight, project).archive
    restores = [lifecycle.restore_environment(tight, project, manual, confirmed=True) for _ in range(3)]
    left = db_backups.list_backups(tight, project)
    assert [b.path for b in left] == [restores[-1].backup_before, manual]
    assert restores[1].rotated_out == (restores[0].backup_before,)


def test_progress_is_reported_through_the_callback(fresh_tester) -> None:
    profile, project = fresh_tester
    seen: list[clients.Progress] = []
    backup = lifecycle.backup_environment(profile, project, progress=seen.append).backup
    tables = len(backup.record["tables"])
    assert seen and seen[-1] == clients.Progress("backup", tables, tables, backup.size)
    seen.clear()
    lifecycle.restore_environment(profile, project, backup.path, confirmed=True, progress=seen.append)
    restored = [p for p in seen if p.action == "restore"]
    assert restored and restored[-1].tables_done == tables and restored[-1].bytes_done > 0
    assert [p.tables_done for p in restored] == sorted(p.tables_done for p in restored)


def test_a_plain_sql_backup_is_listed_but_not_restored(fresh_tester) -> None:
    profile, project = fresh_tester
    plain = lifecycle.backup_environment(profile, project, plain=True).backup
    assert plain.path.suffix == ".sql" and plain.plain and plain.readers == db_backups.PLAIN_READERS
    text = plain.path.read_text()
    assert "CREATE TABLE public.alpha_users" in text and "tester123" in text
    assert stat.S_IMODE(plain.path.stat().st_mode) == 0o600
    with pytest.raises(UsageError, match="has no backups to verify"):
        lifecycle.verify_environment(profile, project)
    with pytest.raises(UsageError, match="only safety copies|plain-SQL"):
        lifecycle.restore_environment(profile, project, confirmed=True)
    with pytest.raises(UsageError, match="is a plain-SQL file for other tools"):
        lifecycle.restore_environment(profile, project, plain.path, confirmed=True)


_PG15 = Path("/usr/lib/postgresql/15/bin")


@pytest.mark.skipif(not (_PG15 / "pg_restore").is_file(),
                    reason="Debian's PostgreSQL 15 client (/usr/lib/postgresql/15/bin/pg_restore) is not installed here")
def test_an_older_pg_restore_refuses_the_archives_as_the_list_says(fresh_tester) -> None:
    profile, project = fresh_tester
    backup = lifecycle.backup_environment(profile, project).backup
    major = int(backup.record["client_version"])
    assert backup.readers == f"pg_restore {major} or newer" and major > 15
    refused = subprocess.run([str(_PG15 / "pg_restore"), "--list", str(backup.path)], capture_output=True, text=True)
    assert refused.returncode == 1 and "unsupported version" in refused.stderr


@pytest.mark.skipif(not (_PG15 / "psql").is_file(),
                    reason="Debian's PostgreSQL 15 client (/usr/lib/postgresql/15/bin/psql) is not installed here")
def test_plain_sql_is_read_by_a_psql_that_knows_restrict(fresh_tester) -> None:
    profile, project = fresh_tester
    plain = lifecycle.backup_environment(profile, project, plain=True).archive
    assert "\\restrict " in plain.read_text()  # what psql before 13.22/14.19/15.14/16.10/17.6 rejects
    version = subprocess.run([str(_PG15 / "psql"), "--version"], capture_output=True, text=True).stdout.split()[2]
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE fake_plain_copy")
    try:
        env = {"PGPASSWORD": admin.password, "PATH": "/usr/bin:/bin"}
        loaded = subprocess.run([str(_PG15 / "psql"), "--no-psqlrc", "--set=ON_ERROR_STOP=1", "--quiet",
                                 f"--host={admin.host}", f"--port={admin.port}", f"--username={admin.user}",
                                 "--dbname=fake_plain_copy", f"--file={plain}"], capture_output=True, text=True,
                                env=env)
        knows = tuple(int(p) for p in version.split(".")[:2]) >= (15, 14)
        assert (loaded.returncode == 0) == knows, loaded.stderr
    finally:
        with connection.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE fake_plain_copy WITH (FORCE)")


def test_the_pre_teardown_copy_brings_the_data_back_after_a_new_setup(fresh_tester) -> None:
    profile, project = fresh_tester
    _set_notes(profile, project, "before the teardown")
    torn = lifecycle.teardown_environment(profile, project, confirmed=True)
    assert torn.backup is not None and torn.backup.name.endswith("-pre-teardown.dump")
    set_up(profile, project)
    assert _notes(profile, project) == [("tester123", None)]
    [copy] = db_backups.list_backups(profile, project)
    assert copy.kind == "pre-teardown" and copy.path == torn.backup
    with pytest.raises(UsageError, match="has only safety copies"):
        lifecycle.choose_archive(profile, project)  # --latest never means a safety copy
    chosen = lifecycle.choose_archive(profile, project, pick=1)
    lifecycle.restore_environment(profile, project, chosen.backup.path, confirmed=True)
    assert _notes(profile, project) == [("tester123", "before the teardown")]


def test_the_scratch_database_is_never_the_environments_own_even_at_63_characters(fresh_tester) -> None:
    profile, _ = fresh_tester
    longest = replace(profile, database=replace(profile.database, name="p" * 63))
    assert db_backups.scratch_name(longest) != longest.database.name
    assert len(db_backups.scratch_name(longest)) == 63 and db_backups.scratch_name(longest).endswith("_verify_restore")
    assert db_backups.scratch_name(profile) == "piper_tester_verify_restore"
