"""The isolation check (scripts/test_user_data_isolation.py): it passes when isolation holds, and
each check fails when what it guards is broken."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from scripts import test_user_data_isolation as isolation_script
from services import credentials, envfile
from services.database import connection
from services.postgres import servers
from services.profiles import load_profile
from services.project import CODE_ROOT, Project
from tests.conftest import INVOKE, run_cli, set_up


def _owner(project: Project, env: str = "alpha"):
    return connection.connect(credentials.target(load_profile(env, project), project, "owner"))


def _usernames(project: Project) -> list[str]:
    with _owner(project) as conn:
        return [r[0] for r in conn.execute("SELECT username FROM alpha_users ORDER BY username")]


def _lines(out: str) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line.split()[0] for line in out.splitlines() if line[:4] in ("PASS", "FAIL")}


@pytest.fixture
def alpha_only(project: Project) -> Project:
    set_up(load_profile("alpha", project), project)
    return project


def test_isolation_holds_in_a_fresh_environment_and_temporary_users_are_removed(alpha_only, capsys) -> None:
    assert _usernames(alpha_only) == ["alfy"]
    assert isolation_script.main(["--env", "alpha"]) == 0
    out = capsys.readouterr().out
    assert _lines(out) == {name: "PASS" for name in ("piper-md", "contexts", "row-level-security", "stamp", "access")}
    assert "isolation holds in alpha (5 checks)" in out
    assert _usernames(alpha_only) == ["alfy"]
    task = run_cli([*INVOKE, "verify-isolation", "--env", "alpha"], alpha_only)
    assert task.returncode == 0 and "isolation holds in alpha" in task.stdout


def test_disabled_row_level_security_fails_and_temporary_users_are_still_removed(alpha_only, capsys) -> None:
    with _owner(alpha_only) as conn:
        conn.execute("ALTER TABLE alpha_users DISABLE ROW LEVEL SECURITY")
        conn.commit()
    assert isolation_script.main(["--env", "alpha"]) == 1
    captured = capsys.readouterr()
    assert _lines(captured.out)["row-level-security"] == "FAIL"
    assert "read 1, updated 1 and deleted 1" in captured.out
    assert "isolation does NOT hold in alpha: row-level-security failed" in captured.err
    assert _usernames(alpha_only) == ["alfy"]


def test_an_application_role_that_may_bypass_rls_fails(alpha_only, capsys) -> None:
    admin = credentials.target(load_profile("alpha", alpha_only), alpha_only, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER ROLE piper_app BYPASSRLS")
    assert isolation_script.main(["--env", "alpha"]) == 1
    assert "may bypass RLS" in capsys.readouterr().out


def test_a_leaked_preference_in_piper_md_fails(alpha_only, capsys) -> None:
    from psycopg.types.json import Jsonb

    with _owner(alpha_only) as conn:
        conn.execute("UPDATE alpha_users SET preferences = %s WHERE username = 'alfy'",
                     (Jsonb({"contact": {"full_name": "Zanzibar Quuxley"}, "tone": "plain"}),))
        conn.commit()
    piper_md = alpha_only.config_dir / "PIPER.md"
    piper_md.write_text(piper_md.read_text() + "\nEscalate to zanzibar quuxley when unsure.\n")
    assert isolation_script.main(["--env", "alpha"]) == 1
    out = capsys.readouterr().out
    assert _lines(out)["piper-md"] == "FAIL" and "PIPER.md:" in out
    assert "Zanzibar" not in out and "Quuxley" not in out  # findings are redacted


def test_a_profile_audit_term_in_piper_md_fails(alpha_only, capsys) -> None:
    piper_md = alpha_only.config_dir / "PIPER.md"
    term = load_profile("dev", alpha_only).audit.terms[0].term
    piper_md.write_text(piper_md.read_text() + f"\nAsk {term.title()} first.\n")
    assert isolation_script.main(["--env", "alpha"]) == 1
    assert _lines(capsys.readouterr().out)["piper-md"] == "FAIL"


def test_two_profiles_on_one_database_fail(alpha_only, capsys) -> None:
    alpha = load_profile("alpha", alpha_only)
    path = alpha_only.environments_dir / "tester.yaml"
    data = yaml.safe_load(path.read_text())
    data["database"].update(port=alpha.database.port, name=alpha.database.name)
    path.write_text(yaml.safe_dump(data))
    assert isolation_script.main(["--env", "alpha"]) == 1
    out = capsys.readouterr().out
    assert _lines(out)["stamp"] == "FAIL" and "profile 'tester' points at the same server and database" in out


def test_a_wrong_stamp_fails(alpha_only, capsys) -> None:
    with _owner(alpha_only) as conn:
        conn.execute("UPDATE piper_metadata SET value = 'tester' WHERE key = 'environment'")
        conn.commit()
    assert isolation_script.main(["--env", "alpha"]) == 1
    assert "stamped for environment 'tester', not 'alpha'" in capsys.readouterr().out


def test_an_application_role_that_can_rewrite_the_stamp_fails_until_setup_repairs_it(alpha_only, capsys) -> None:
    with _owner(alpha_only) as conn:  # what a hand pg_restore --clean leaves behind
        conn.execute("GRANT UPDATE ON piper_metadata TO piper_app")
        conn.commit()
    assert isolation_script.main(["--env", "alpha"]) == 1
    assert "piper_app may change the environment stamp" in capsys.readouterr().out
    report = set_up(load_profile("alpha", alpha_only), alpha_only)
    assert any("restored the privileges of piper_app" in change for change in report.changes)
    assert isolation_script.main(["--env", "alpha"]) == 0


def test_an_application_role_that_can_read_the_event_log_fails_until_setup_repairs_it(alpha_only, capsys) -> None:
    with _owner(alpha_only) as conn:
        conn.execute("GRANT SELECT, DELETE ON user_data_events TO piper_app")
        conn.commit()
    assert isolation_script.main(["--env", "alpha"]) == 1
    assert "piper_app can reach user_data_events, which only admin tasks may" in capsys.readouterr().out
    set_up(load_profile("alpha", alpha_only), alpha_only)
    assert isolation_script.main(["--env", "alpha"]) == 0


def test_loose_file_permissions_fail(alpha_only, capsys) -> None:
    alpha_only.env_file.chmod(0o644)
    try:
        assert isolation_script.main(["--env", "alpha"]) == 1
        assert ".env is readable by others" in capsys.readouterr().out
    finally:
        alpha_only.env_file.chmod(0o600)


def test_isolation_holds_in_hosted_production_over_tls(production_env, capsys) -> None:
    assert isolation_script.main(["--env", "production"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "TLS required (sslmode=verify-full)" in out and "isolation holds in production" in out


def test_secrets_never_reach_the_server_log_or_command_output(alpha_only) -> None:
    profile = load_profile("alpha", alpha_only)
    secrets = [v for k, v in envfile.read(alpha_only.env_file).items() if k.endswith("_PASSWORD")]
    server = servers.locate(profile, alpha_only)
    outputs = [server.log_file.read_text(errors="replace")]
    for argv in ([*INVOKE, "setup", "--env", "alpha"], [*INVOKE, "status", "--json"],
                 [*INVOKE, "verify-isolation", "--env", "alpha"],
                 [sys.executable, "scripts/create_test_alpha_user.py", "--username", "bad name", "--env", "alpha"]):
        result = run_cli(argv, alpha_only)
        outputs += [result.stdout, result.stderr]
    wrong = run_cli([*INVOKE, "status"], alpha_only, PIPER_ALPHA_OWNER_PASSWORD="not-the-password-123")
    outputs += [wrong.stdout, wrong.stderr]
    assert "password authentication failed" in wrong.stderr  # the failure is reported ...
    for secret in [*secrets, "not-the-password-123"]:
        assert not any(secret in text for text in outputs)  # ... without the password


def test_no_tracked_file_of_the_repository_holds_personal_data() -> None:
    result = subprocess.run([sys.executable, "scripts/audit_piper_md.py", "--all"], cwd=CODE_ROOT,
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PIPER_ROOT": str(CODE_ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
