"""The invoke tasks as a user runs them: real subprocesses, exit codes and messages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.errors import UsageError
from services.project import Project
from tests.support.cli import INVOKE, cli_env, run_cli
from tests.support.projects import REPO

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
                                        "redirect it to a file (> FILE)"]


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
    assert err.splitlines()[-1] == "error: terminated; nothing was changed by the step that was running"


def test_bench_refuses_an_unknown_benchmark_and_rewrites_only_its_own_section(tmp_path) -> None:
    from datetime import datetime

    from services import benchmarks

    unknown = subprocess.run([*INVOKE, "bench", "--only", "nosuch"], cwd=REPO, capture_output=True, text=True,
                             check=False)
    assert unknown.returncode == 2
    assert unknown.stderr == f"error: --only names no benchmark (nosuch); choose from {', '.join(benchmarks.BENCHMARKS)}\n"
    assert {"startup", "setup", "audit", "user-data", "env", "doctor", "onboard"} <= set(benchmarks.BENCHMARKS)
    document = tmp_path / "BENCHMARKS.md"
    document.write_text(f"# Benchmarks\n\nintro\n\n{benchmarks.BEGIN}\n## Latest\n\n"
                        "### hook (5 s, 2026-11-30 08:00)\n\n| hook | old but latest |\n\n"
                        "### setup (4 s, 2026-11-30 08:00)\n\n| setup | stale |\n\n"
                        f"### gone (1 s)\n\n| a benchmark no longer known |\n{benchmarks.END}\n\n## history\nkept\n")
    measured = [benchmarks.Measured("setup", "| what | median |\n|---|---|\n| x | 1 s |", 3.0)]
    benchmarks.rewrite_latest(document, measured, when=datetime(2026, 12, 1, 9, 0))
    text = document.read_text()
    assert "## history\nkept\n" in text and text.startswith("# Benchmarks\n\nintro\n")
    # --only setup: its table is replaced, with when it ran; the latest hook table stays, in BENCHMARKS order.
    section = text.split(benchmarks.BEGIN, 1)[1].split(benchmarks.END, 1)[0]
    assert "| setup | stale |" not in section and "no longer known" not in section
    assert section.index("### setup (3 s, 2026-12-01 09:00)\n\n| what | median |\n|---|---|\n| x | 1 s |\n") < \
        section.index("### hook (5 s, 2026-11-30 08:00)\n\n| hook | old but latest |\n")
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(UsageError, match="has no <!-- bench:latest:begin -->"):
        benchmarks.rewrite_latest(tmp_path / "plain.md", measured)
