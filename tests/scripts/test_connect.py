"""`invoke env` and `invoke psql` as a user runs them: real subprocesses, the server's own psql, a real terminal."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time

import pexpect
import psutil
import psycopg
import pytest

from services import envfile
from services.postgres import servers
from services.project import Project
from tests.support.cli import INVOKE, cli_env, run_cli
from tests.support.projects import REPO


def _password(project: Project, env: str = "alpha", role: str = "app") -> str:
    return envfile.read(project.env_file)[f"PIPER_{env.upper()}_{role.upper()}_PASSWORD"]


def test_env_hides_the_password_unless_asked(alpha_env) -> None:
    profile, project = alpha_env
    result = run_cli([*INVOKE, "env"], project)
    assert result.returncode == 0, result.stderr
    port = servers.locate(profile, project).port
    # *** would glob if a shell sourced the file: quoted.
    assert result.stdout == (f"DATABASE_URL='postgresql://piper_app:***@127.0.0.1:{port}/piper_alpha'\n"
                             f"PGHOST=127.0.0.1\nPGPORT={port}\nPGDATABASE=piper_alpha\nPGUSER=piper_app\n")
    assert "--show-password" in result.stderr and "warning" not in result.stderr
    for role in ("app", "owner", "admin"):
        assert _password(project, role=role) not in result.stdout + result.stderr
    shown = run_cli([*INVOKE, "env", "--format", "json", "--show-password"], project)
    variables = json.loads(shown.stdout)
    assert variables["PGPASSWORD"] == _password(project)
    assert variables["DATABASE_URL"] == envfile.read(project.env_file)["DATABASE_URL"]
    with psycopg.connect(variables["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("piper_app",)
    assert stat.S_IMODE(project.env_file.stat().st_mode) == 0o600


def test_eval_of_the_shell_format_then_the_servers_psql(alpha_env) -> None:
    profile, project = alpha_env
    psql = servers.locate(profile, project).bin_dir / "psql"
    for role, user in (("app", "piper_app"), ("owner", "piper_owner")):
        invoke = shlex.join([*INVOKE, "env", "--env", "alpha", "--role", role, "--format", "shell", "--show-password"])
        script = f'eval "$({invoke})" && {shlex.quote(str(psql))} -Atc "select current_user"'
        result = subprocess.run(["bash", "-c", script], cwd=REPO, env=cli_env(project), capture_output=True,
                                text=True, timeout=60, check=False)
        assert (result.returncode, result.stdout) == (0, f"{user}\n"), result.stderr


@pytest.mark.parametrize("argv, named", [(["--role", "admin"], "--role"), (["--format", "yaml"], "--format"),
                                         (["--rol", "app"], "--role")])
def test_bad_role_or_format_is_one_line_and_exit_2(alpha_env, argv: list[str], named: str) -> None:
    profile, project = alpha_env
    for command in ("env", "psql"):
        if command == "psql" and "--format" in argv:
            continue
        result = run_cli([*INVOKE, command, *argv], project)
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and named in result.stderr, result.stderr


def test_psql_runs_commands_and_exits_with_psqls_code(alpha_env) -> None:
    profile, project = alpha_env
    result = run_cli([*INVOKE, "psql", "--", "-At", "-c", "select current_user || ' ' || current_database()"], project)
    assert (result.returncode, result.stdout) == (0, "piper_app piper_alpha\n"), result.stderr
    owner = run_cli([*INVOKE, "psql", "--role", "owner", "--command", "select current_user"], project)
    assert owner.returncode == 0 and "piper_owner" in owner.stdout
    failed = run_cli([*INVOKE, "psql", "--command", "select 1/0"], project)
    assert failed.returncode == 1 and "division by zero" in failed.stderr
    assert not list(project.data_root.glob(".pgpass*"))  # the private password file is gone


def test_psqls_password_is_in_no_argument_and_no_environment(alpha_env) -> None:
    profile, project = alpha_env
    process = subprocess.Popen([*INVOKE, "psql", "--command", "select pg_sleep(3)"], cwd=REPO, env=cli_env(project),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        psql = _psql_child(process)
        seen = " ".join(psql.cmdline()) + " ".join(f"{k}={v}" for k, v in psql.environ().items())
        assert stat.S_IMODE(os.stat(psql.environ()["PGPASSFILE"]).st_mode) == 0o600
        for role in ("app", "owner", "admin"):
            assert _password(project, role=role) not in seen
    finally:
        assert process.wait(timeout=60) == 0


def _psql_child(process: subprocess.Popen) -> psutil.Process:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [p for p in psutil.Process(process.pid).children(recursive=True) if p.name() == "psql"]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("psql never started")


def test_sigterm_ends_psql_too_and_leaves_no_password_file(alpha_env) -> None:
    profile, project = alpha_env
    process = subprocess.Popen([*INVOKE, "psql", "--command", "select pg_sleep(60)"], cwd=REPO, env=cli_env(project),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    psql = _psql_child(process)
    passfile = psql.environ()["PGPASSFILE"]
    process.terminate()
    _, errors = process.communicate(timeout=30)
    assert process.returncode == 143 and errors.strip() == (
        "error: terminated; nothing was changed by the step that was running")
    psql.wait(timeout=10)  # gone, not left running on its own
    assert not os.path.exists(passfile)


def test_psql_in_a_terminal(alpha_env) -> None:
    profile, project = alpha_env
    child = pexpect.spawn(INVOKE[0], [*INVOKE[1:], "psql"], cwd=str(REPO), encoding="utf-8", timeout=30,
                          # A terminal as a user has one; psql's pager (less) would wait for a key.
                          env=cli_env(project, TERM="xterm", PSQL_PAGER=""), dimensions=(50, 200))
    try:
        child.expect("piper_alpha=> ")
        child.sendline("\\conninfo")
        # PostgreSQL 18 prints a table ("Database | piper_alpha" ... "Client User | piper_app"), older ones a sentence.
        child.expect(r'(?s)Database\s+\| piper_alpha\s.*Client User\s+\| piper_app\s'
                     r'|connected to database "piper_alpha" as user "piper_app"')
        child.expect("piper_alpha=> ")
        child.sendline("select pg_sleep(30);")
        time.sleep(0.5)
        child.sendintr()  # Ctrl-C cancels the query, as in any psql, and leaves psql running
        child.expect("canceling statement due to user request")
        child.expect("piper_alpha=> ")
        child.sendline("select count(*) from alpha_users;")  # row-level security: no acting user, no rows
        child.expect(r"\s+0\s")
        child.sendline("\\q")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_psql_on_a_stopped_server_says_how_to_start_it(fresh_tester) -> None:
    profile, project = fresh_tester
    assert run_cli([sys.executable, "-m", "invoke", "--search-root", str(REPO), "db-stop"], project).returncode == 0
    result = run_cli([*INVOKE, "psql", "--command", "select 1"], project)
    assert result.returncode == 1 and result.stderr.strip() == (
        "error: the server of environment 'tester' is not running; run `invoke db-start --env tester`")
    env = run_cli([*INVOKE, "env", "--format", "shell"], project)  # the variables need no running server
    assert env.returncode == 0 and "export PGDATABASE=piper_tester" in env.stdout


def test_env_imports_no_driver_orm_or_alembic(alpha_env) -> None:
    profile, project = alpha_env
    probe = ("import sys\nfrom scripts import _commands\ncode = _commands.ENV.main(['--format', 'json'])\n"
             "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'psycopg', 'sqlalchemy', 'alembic'})\n"
             "print(code, heavy, file=sys.stderr)\n")
    result = run_cli([sys.executable, "-c", probe], project)
    assert result.stderr.splitlines()[-1] == "0 []", result.stderr
    assert json.loads(result.stdout)["PGDATABASE"] == "piper_alpha"
