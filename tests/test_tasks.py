"""The invoke tasks as a user runs them: real subprocesses, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services import credentials, envfile
from services.profiles import load_profile
from services.project import Project
from tests.conftest import INVOKE, REPO, cli_env, run_cli

TASKS = ["accept-invitation", "audit-piper-md", "backup-config", "create-user", "db-backup", "db-restore", "db-start",
         "db-stop", "delete-user",
         "export-user", "import-user", "migrate-personal-data", "restore-config", "setup", "status", "teardown",
         "verify-isolation"]


def test_invoke_list_shows_every_task_with_help_and_loads_no_database_code() -> None:
    result = subprocess.run([*INVOKE, "--list"], cwd=REPO, capture_output=True, text=True, check=True)
    listed = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.startswith("  ") and line.split()}
    for name in TASKS:
        assert name in listed and len(listed[name].split()) > 1, f"{name} has no help line"
    probe = ("import sys, tasks; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
             "{'psycopg', 'sqlalchemy', 'alembic', 'psutil', 'filelock'}); print(heavy)")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


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


@pytest.mark.slow
def test_two_setups_at_once_both_succeed_and_create_one_server(project: Project) -> None:
    env = cli_env(project)
    runs = [subprocess.Popen([*INVOKE, "setup", "--env", "alpha"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    created = sum("created a PostgreSQL server" in out for out, _ in outputs)
    assert created == 1
    assert sum("created user alfy" in out for out, _ in outputs) == 1
    profile = load_profile("alpha", project)
    from services.database import connection

    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT count(*) FROM alpha_users").fetchone() == (1,)


@pytest.mark.slow
def test_setups_of_three_environments_at_once_keep_every_password(project: Project) -> None:
    env = cli_env(project)
    runs = [subprocess.Popen([*INVOKE, "setup", "--env", name], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name in ("dev", "alpha", "tester")]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    secrets = envfile.read(project.env_file)
    for name in ("DEV", "ALPHA", "TESTER"):
        for role in ("ADMIN", "OWNER", "APP"):
            assert secrets.get(f"PIPER_{name}_{role}_PASSWORD")
    from services.database import connection

    for name in ("dev", "alpha", "tester"):  # and each password opens its own database
        with connection.connect(credentials.target(load_profile(name, project), project, "app")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (f"piper_{name}",)


def test_create_user_script_and_task_share_one_path(alpha_env) -> None:
    _, project = alpha_env
    script = run_cli([sys.executable, "scripts/create_test_alpha_user.py", "--username", "fake.tester", "--env", "alpha"], project)
    assert script.returncode == 0 and "created user fake.tester" in script.stdout, script.stderr
    task = run_cli([*INVOKE, "create-user", "--username", "fake.tester", "--env", "alpha"], project)
    assert task.returncode == 0 and "already exists in alpha" in task.stdout and "nothing changed" in task.stdout
    bad = run_cli([sys.executable, "scripts/create_test_alpha_user.py", "--username", "Bad Name!", "--env", "alpha"], project)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: username 'Bad Name!' is not valid")


@pytest.mark.parametrize(("task", "flag"), [("create-user", "--username"), ("export-user", "--username"),
                                            ("import-user", "--username"), ("delete-user", "--username"),
                                            ("migrate-personal-data", "--username"), ("restore-config", "--date")])
def test_task_help_after_the_task_name_and_a_missing_required_flag(project: Project, task: str, flag: str) -> None:
    shown = run_cli([*INVOKE, task, "--help"], project)
    assert shown.returncode == 0 and f"{flag}=STRING" in shown.stdout and "required" in shown.stdout, shown.stderr
    missing = run_cli([*INVOKE, task, "--env", "alpha"], project)
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[-1].startswith("error: the following arguments are required: " + flag)


def test_every_task_takes_long_flags_only(project: Project) -> None:
    import re

    for task in TASKS:
        shown = run_cli([*INVOKE, "--help", task], project)
        assert shown.returncode == 0, shown.stderr
        options = shown.stdout.split("Options:", 1)[1]
        flags = re.findall(r"^\s+(-\S+)", options, re.MULTILINE)
        assert flags and all(flag.startswith("--") for flag in flags), (task, flags)


@pytest.mark.parametrize(("task", "script", "argv", "message"), [
    ("create-user", "create_test_alpha_user", ["--usernme", "x"],
     "error: unknown option --usernme (did you mean --username?); see --help"),
    ("import-user", "import_user_data", ["--username", "x", "--data", "-", "--merge", "--replace"],
     "error: argument --replace: not allowed with argument --merge; see --help"),
    ("audit-piper-md", "audit_piper_md", ["--format", "xml"],
     "error: argument --format: invalid choice: 'xml' (choose from 'text', 'json', 'sarif'); see --help"),
    ("audit-piper-md", "audit_piper_md", ["--workers", "0"],
     "error: argument --workers: '0' is not a whole number of at least 1; see --help"),
    ("export-user", "export_user_data", ["--env"], "error: argument --env: expected one argument; see --help"),
])
def test_both_doors_refuse_bad_flags_with_the_same_line_and_exit_2(project: Project, task: str, script: str,
                                                                  argv: list[str], message: str) -> None:
    for door in ([*INVOKE, task], [sys.executable, f"scripts/{script}.py"]):
        result = run_cli([*door, *argv], project)
        assert (result.returncode, result.stderr, result.stdout) == (2, message + "\n", ""), door


def test_an_unknown_task_names_the_closest_one(project: Project) -> None:
    result = run_cli([*INVOKE, "stup", "--env", "alpha"], project)
    assert result.returncode == 2
    assert result.stderr == "error: unknown command 'stup' (did you mean setup?); see `invoke --list`\n"


def test_a_task_whose_output_is_closed_early_says_so_in_one_line(project: Project) -> None:
    # status, like every task, has the scripts' edge: a reader that goes away is one line, exit 1.
    process = subprocess.Popen([*INVOKE, "status", "--json"], cwd=REPO, env=cli_env(project), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.strip().splitlines() == ["error: standard output was closed before everything was written; "
                                        "redirect it to a file (> FILE) or pass --output FILE"]


def test_sigterm_unwinds_a_task_like_a_script(alpha_env) -> None:
    import signal
    import time

    # import-user reading its document from standard input waits there; SIGTERM unwinds it
    # (exit 128 + 15, no traceback) instead of killing it where it stands.
    _, project = alpha_env
    process = subprocess.Popen([*INVOKE, "import-user", "--env", "alpha", "--username", "alfy", "--data", "-"], cwd=REPO,
                               env=cli_env(project), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(1.5)  # past start-up, into the read
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and out == ""
