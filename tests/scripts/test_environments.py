"""scripts/_environments.py: setup, status, teardown and the db-* commands, through the invoke door
(their only door) as real subprocesses: output, exit codes and the environment they select."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from services import envfile
from services.project import Project
from tests.support.cli import INVOKE, run_cli


def test_setup_twice_then_status_then_stop_and_start(project: Project) -> None:
    first = run_cli([*INVOKE, "setup", "--env", "tester"], project)
    assert first.returncode == 0, first.stderr
    assert "tester: set up" in first.stdout and "created database piper_tester" in first.stdout
    assert "created user tester123" in first.stdout
    assert "database: postgresql://piper_owner:***@" in first.stdout
    secrets = [v for k, v in envfile.read(project.env_file).items() if k.endswith("_PASSWORD")]
    second = run_cli([*INVOKE, "setup", "--env", "tester"], project)
    assert second.returncode == 0, second.stderr
    assert "already in place; nothing changed" in second.stdout
    assert "user tester123 already exists" in second.stdout
    for output in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert not any(secret in output for secret in secrets)

    status = run_cli([*INVOKE, "status", "--json"], project)
    assert status.returncode == 0, status.stderr
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert rows["tester"]["running"] and rows["tester"]["users"] == 1 and rows["tester"]["selected"]
    assert rows["tester"]["revision"] == rows["tester"]["head"]
    table = run_cli([*INVOKE, "status"], project)
    assert table.returncode == 0 and "tester" in table.stdout and "running" in table.stdout
    assert "not configured" in table.stdout and table.stderr == ""  # production: no URL, no noise

    # With no --env, the environment selected in .env is used.
    stop = run_cli([*INVOKE, "db-stop"], project)
    assert stop.returncode == 0 and "tester: server stopped" in stop.stdout, stop.stderr
    assert json.loads(run_cli([*INVOKE, "status", "--json"], project).stdout)[-1]["running"] is False
    start = run_cli([*INVOKE, "db-start", "--env", "tester"], project)
    assert start.returncode == 0 and "tester: server running" in start.stdout, start.stderr


def test_no_selected_environment_is_an_error_listing_the_profiles(project: Project) -> None:
    result = run_cli([*INVOKE, "db-start"], project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no environment selected; pass --env NAME, set PIPER_ENV, or run `invoke setup --env NAME` "
        "(profiles: alpha, dev, production, tester)"
    )
    unknown = run_cli([*INVOKE, "setup", "--env", "staging"], project)
    assert unknown.returncode == 2
    assert "unknown environment 'staging'; known environments: alpha, dev, production, tester" in unknown.stderr
    assert not (project.root / "postgres_data" / "staging").exists()


def test_pipers_env_variable_selects_the_environment(project: Project) -> None:
    result = run_cli([*INVOKE, "db-stop"], project, PIPER_ENV="dev")
    assert result.returncode == 0 and "dev: server was not running" in result.stdout


def test_teardown_asks_refuses_protected_and_removes_with_yes(project: Project) -> None:
    assert run_cli([*INVOKE, "setup", "--env", "tester"], project).returncode == 0
    data = project.root / "postgres_data" / "tester"
    refused = run_cli([*INVOKE, "teardown", "--env", "tester"], project, input="")
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert data.exists()
    protected = run_cli([*INVOKE, "teardown", "--env", "production", "--yes"], project)
    assert protected.returncode == 1 and "is protected" in protected.stderr
    removed = run_cli([*INVOKE, "teardown", "--env", "tester", "--yes"], project)
    assert removed.returncode == 0, removed.stderr
    assert "tester: database backed up to " in removed.stdout
    rows = {row["name"]: row for row in json.loads(run_cli([*INVOKE, "status", "--json"], project).stdout)}
    assert rows["tester"]["last_backup"] and rows["tester"]["last_backup"] in removed.stdout
    assert not data.exists() and not data.is_symlink()
    assert "PIPER_TESTER_ADMIN_PASSWORD" not in envfile.read(project.env_file)
    again = run_cli([*INVOKE, "teardown", "--env", "tester", "--yes"], project)
    assert again.returncode == 0 and "there was no server to tear down; nothing changed" in again.stdout


def test_the_tasks_back_up_list_and_restore(fresh_tester) -> None:
    profile, project = fresh_tester
    backup = run_cli([*INVOKE, "db-backup", "--env", "tester"], project)
    assert backup.returncode == 0 and "tester: backed up to " in backup.stdout and "(verified)" in backup.stdout
    listing = run_cli([*INVOKE, "db-backup", "--env", "tester", "--list"], project)
    assert listing.returncode == 0 and ".dump" in listing.stdout
    refused = run_cli([*INVOKE, "db-restore", "--env", "tester"], project, input="")
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    restored = run_cli([*INVOKE, "db-restore", "--env", "tester", "--yes"], project)
    assert restored.returncode == 0 and "backed up the database first to " in restored.stdout, restored.stderr


# --- issue 13: restores that pick what the user means, verification, automatic backups, progress ---


def _invoke(project: Project, *args: str, **extra: str):  # type: ignore[no-untyped-def]
    return run_cli([*INVOKE, *args, "--env", "tester"], project, **extra)


def test_restore_says_what_it_restores_and_a_second_one_does_not_undo_the_first(fresh_tester) -> None:
    profile, project = fresh_tester
    taken = _invoke(project, "db-backup")
    assert taken.returncode == 0, taken.stderr
    archive = taken.stdout.split("backed up to ", 1)[1].split(" (verified)")[0]
    assert archive.endswith("-manual.dump")
    for _ in range(2):
        restored = _invoke(project, "db-restore", "--yes")
        assert restored.returncode == 0, restored.stderr
        lines = restored.stdout.splitlines()
        assert lines[0].startswith(f"tester: restoring {Path(archive).name} (manual, taken 20")
        assert lines[0].endswith(" UTC), chosen by the newest backup that is not a safety copy")
        assert f"tester: restored {archive}" in restored.stdout
        assert "-pre-restore.dump (pre-restore; `invoke db-restore --pick 1 --env tester` undoes this restore)" \
            in restored.stdout
        assert restored.stderr == ""  # piped: no progress line
    assert "passed over 1 newer safety copy (newest: pre-restore of 20" in restored.stdout
    listing = _invoke(project, "db-backup", "--list")
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.splitlines()
    assert rows[0] == "tester: 3 backup(s) in backups/tester/, newest first (`invoke db-restore --pick N` restores number N)"
    assert rows[1].split() == ["#", "TAKEN", "(UTC)", "SIZE", "KIND", "VERIFIED", "SCHEMA", "READ", "BY", "FILE"]
    assert [r.split()[5] for r in rows[2:5]] == ["pre-restore", "pre-restore", "manual"]
    assert all(" no " in r and re.search(r" pg_restore \d+ or newer ", r) for r in rows[2:5])
    assert "an older one refuses them (docs/BACKUPS.md)" in rows[-1]
    same = _invoke(project, "db-restore", "--list")  # the list --pick numbers, from the restore itself
    assert same.returncode == 0 and same.stdout == listing.stdout, same.stderr
    picked = _invoke(project, "db-restore", "--pick", "2", "--yes")
    assert picked.returncode == 0 and "chosen by --pick 2" in picked.stdout, picked.stderr
    assert rows[3].split()[-1] in picked.stdout.splitlines()[0]


def test_which_archive_flags_are_exclusive_and_checked(fresh_tester) -> None:
    profile, project = fresh_tester
    both = _invoke(project, "db-restore", "--pick", "1", "--latest", "--yes")
    assert both.returncode == 2 and "error:" in both.stderr and "--latest" in both.stderr
    none = _invoke(project, "db-restore", "--pick", "1", "--yes")
    assert none.returncode == 2
    assert none.stderr.strip() == ("error: environment 'tester' has no backups in backups/tester/; take one with "
                                   "`invoke db-backup --env tester` or pass --file")
    not_an_archive = project.root / "notes.txt"
    not_an_archive.write_text("not a dump\n")
    refused = _invoke(project, "db-restore", "--file", str(not_an_archive), "--yes")
    assert refused.returncode == 2 and "is not a pg_dump archive" in refused.stderr and refused.stdout == ""
    zero = _invoke(project, "db-restore", "--pick", "0", "--yes")
    assert zero.returncode == 2 and "--pick" in zero.stderr


def test_verify_restore_from_the_command_line(fresh_tester) -> None:
    profile, project = fresh_tester
    nothing = _invoke(project, "db-backup", "--verify-restore")
    assert nothing.returncode == 2 and "has no backups to verify" in nothing.stderr
    assert _invoke(project, "db-backup").returncode == 0
    checked = _invoke(project, "db-backup", "--verify-restore")
    assert checked.returncode == 0, checked.stderr
    assert "-manual.dump restores: 6 tables, " in checked.stdout and "the stamp 'tester' match" in checked.stdout
    listing = _invoke(project, "db-backup", "--list")
    assert " yes 20" in listing.stdout.splitlines()[2]
    [record] = (project.root / "backups" / "tester").glob("*.json")
    data = json.loads(record.read_text())
    data["stamp"] = "alpha"
    record.write_text(json.dumps(data))
    failed = _invoke(project, "db-backup", "--verify-restore")
    assert failed.returncode == 1
    assert "did not restore as it was taken: stamp: 'alpha' in the archive, 'tester' restored" in failed.stderr
    assert " FAILED 20" in _invoke(project, "db-backup", "--list").stdout


def test_db_start_and_stop_back_up_by_themselves_once_a_day(fresh_tester) -> None:
    profile, project = fresh_tester
    started = _invoke(project, "db-start")
    assert started.returncode == 0, started.stderr
    assert "tester: automatic backup (backups.auto: daily) to " in started.stdout and "-scheduled.dump" in started.stdout
    for command in ("db-stop", "db-start"):
        again = _invoke(project, command)
        assert again.returncode == 0 and "automatic backup" not in again.stdout, again.stderr
    assert [p.name.rsplit("-", 1)[1] for p in (project.root / "backups" / "tester").glob("*.dump")] == \
        ["scheduled.dump"]


def test_two_db_starts_at_once_take_one_automatic_backup(fresh_tester) -> None:
    import subprocess

    from tests.support.cli import cli_env
    from tests.support.projects import REPO

    profile, project = fresh_tester
    runs = [subprocess.Popen([*INVOKE, "db-start", "--env", "tester"], cwd=REPO, env=cli_env(project),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert sum("automatic backup" in out for out, _ in outputs) == 1
    assert len(list((project.root / "backups" / "tester").glob("*.dump"))) == 1


def test_a_long_restore_shows_progress_on_a_terminal(fresh_tester) -> None:
    import pexpect
    from psycopg.types.json import Jsonb

    from tests.support.cli import spawn_in_terminal
    from tests.support.databases import connect

    profile, project = fresh_tester
    # Enough SQL (2 MB of preferences) that the restore's pipes fill while psql waits on the lock below.
    with connect(profile, project, role="owner") as conn:
        conn.execute("UPDATE alpha_users SET preferences = %s WHERE username = 'tester123'",
                     (Jsonb({"notes": ["fake note %07d" % n for n in range(120_000)]}),))
        conn.commit()
    assert _invoke(project, "db-backup").returncode == 0
    with connect(profile, project, role="owner") as conn:
        # The safety backup may read the table (ACCESS SHARE); the restore's first DROP must wait.
        conn.execute("LOCK TABLE alpha_users IN ACCESS SHARE MODE")
        child = spawn_in_terminal([*INVOKE, "db-restore", "--yes", "--env", "tester"], project)
        try:
            child.expect("tester: restoring ", timeout=60)
            time.sleep(2)  # longer than the progress line's one-second delay
            conn.rollback()
            child.expect(r"restore: +[0-9]+%\|[^|]*\| [0-9]+/[0-9]+ \[", timeout=60)  # tables done of total
            child.expect(r"tester: restored ")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
    assert child.exitstatus == 0
    with connect(profile, project, role="owner") as conn:
        notes = conn.execute("SELECT jsonb_array_length(preferences->'notes') FROM alpha_users").fetchall()
    assert notes == [(120_000,)]


def test_a_long_backup_shows_progress_on_a_terminal(fresh_tester) -> None:
    import pexpect

    from tests.support.cli import spawn_in_terminal
    from tests.support.databases import connect

    profile, project = fresh_tester
    # pg_dump waits on this lock until the test has seen the progress line (after the first second).
    with connect(profile, project, role="owner") as conn:
        conn.execute("LOCK TABLE alpha_users IN ACCESS EXCLUSIVE MODE")
        child = spawn_in_terminal([*INVOKE, "db-backup", "--env", "tester"], project)
        try:
            child.expect(r"backup: +0%\|[^|]*\| 0/6 \[", timeout=60)  # tqdm: tables done of total, then the bytes
            child.expect(r"tables/s, [0-9.]+ (B|KB|MB)\]", timeout=10)
            conn.rollback()
            child.expect("backed up to ")
            child.expect(r"\(verified\)")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
    assert child.exitstatus == 0
