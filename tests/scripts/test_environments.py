"""scripts/_environments.py: setup, status, teardown and the db-* commands, through the invoke door
(their only door) as real subprocesses: output, exit codes and the environment they select."""

from __future__ import annotations

import json

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
