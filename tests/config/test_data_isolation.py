"""Data isolation (ADR-040's `tests/config/test_data_isolation.py`): the isolation check as users run it
(scripts/test_user_data_isolation.py and `invoke verify-isolation`), secrets that never reach logs or
output, and a repository that holds no personal data.

Each check failing when what it guards is broken: tests/services/test_isolation.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

from scripts import test_user_data_isolation as isolation_script
from services import envfile
from services.postgres import servers
from services.project import CODE_ROOT
from tests.support.cli import INVOKE, run_cli
from tests.support.databases import connect, query


def _usernames(profile, project) -> list[str]:
    return [r[0] for r in query(profile, project, "SELECT username FROM alpha_users ORDER BY username")]


def _lines(out: str) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line.split()[0] for line in out.splitlines() if line[:4] in ("PASS", "FAIL")}


def test_isolation_holds_in_a_fresh_environment_and_temporary_users_are_removed(fresh_alpha, capsys) -> None:
    profile, project = fresh_alpha
    assert _usernames(profile, project) == ["alfy"]
    assert isolation_script.main(["--env", "alpha"]) == 0
    out = capsys.readouterr().out
    assert _lines(out) == {name: "PASS" for name in ("piper-md", "contexts", "row-level-security", "stamp", "access")}
    assert "isolation holds in alpha (5 checks)" in out
    assert _usernames(profile, project) == ["alfy"]
    task = run_cli([*INVOKE, "verify-isolation", "--env", "alpha"], project)
    assert task.returncode == 0 and "isolation holds in alpha" in task.stdout


def test_disabled_row_level_security_fails_and_temporary_users_are_still_removed(fresh_alpha, capsys) -> None:
    profile, project = fresh_alpha
    with connect(profile, project) as conn:
        conn.execute("ALTER TABLE alpha_users DISABLE ROW LEVEL SECURITY")
        conn.commit()
    assert isolation_script.main(["--env", "alpha"]) == 1
    captured = capsys.readouterr()
    assert _lines(captured.out)["row-level-security"] == "FAIL"
    assert "read 1, updated 1 and deleted 1" in captured.out
    assert "isolation does NOT hold in alpha: row-level-security failed" in captured.err
    assert _usernames(profile, project) == ["alfy"]


def test_isolation_holds_in_hosted_production_over_tls(production_env, capsys) -> None:
    assert isolation_script.main(["--env", "production"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "TLS required (sslmode=verify-full)" in out and "isolation holds in production" in out


def test_secrets_never_reach_the_server_log_or_command_output(fresh_alpha) -> None:
    profile, project = fresh_alpha
    secrets = [v for k, v in envfile.read(project.env_file).items() if k.endswith("_PASSWORD")]
    server = servers.locate(profile, project)
    outputs = [server.log_file.read_text(errors="replace")]
    for argv in ([*INVOKE, "setup", "--env", "alpha"], [*INVOKE, "status", "--json"],
                 [*INVOKE, "verify-isolation", "--env", "alpha"],
                 [sys.executable, "scripts/create_test_alpha_user.py", "--username", "bad name", "--env", "alpha"]):
        result = run_cli(argv, project)
        outputs += [result.stdout, result.stderr]
    wrong = run_cli([*INVOKE, "status"], project, PIPER_ALPHA_OWNER_PASSWORD="not-the-password-123")
    outputs += [wrong.stdout, wrong.stderr]
    assert "password authentication failed" in wrong.stderr  # the failure is reported ...
    for secret in [*secrets, "not-the-password-123"]:
        assert not any(secret in text for text in outputs)  # ... without the password


def test_no_tracked_file_of_the_repository_holds_personal_data() -> None:
    # A bare environment, but the run's own caches and temporary directory: nothing in your home.
    run = {key: os.environ[key] for key in ("PIPER_YAML_CACHE", "TMPDIR")}
    result = subprocess.run([sys.executable, "scripts/audit_piper_md.py", "--all"], cwd=CODE_ROOT,
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PIPER_ROOT": str(CODE_ROOT), **run})
    assert result.returncode == 0, result.stdout + result.stderr
