"""services/isolation.py: verify_isolation's checks pass when isolation holds, and each fails when what
it guards is broken. Breaking it changes the environment, so each such test has its own."""

from __future__ import annotations

import stat

import pytest
import yaml

from services import isolation
from services.profiles import load_profile
from tests.support.databases import connect, query
from tests.support.projects import set_up

CHECKS = ["piper-md", "contexts", "row-level-security", "stamp", "access"]


def _results(profile, project) -> dict[str, isolation.CheckResult]:
    results = isolation.verify_isolation(profile, project)
    assert [r.name for r in results] == CHECKS
    return {r.name: r for r in results}


def _failed(results: dict[str, isolation.CheckResult]) -> list[str]:
    return [name for name, result in results.items() if not result.passed]


def test_every_check_passes_in_the_shared_environment_and_leaves_its_users_as_they_were(alpha_env) -> None:
    profile, project = alpha_env
    before = query(profile, project, "SELECT username, updated_at FROM alpha_users ORDER BY username")
    results = _results(profile, project)
    assert _failed(results) == []
    assert "holds no personal data" in results["piper-md"].detail
    assert "read 0, updated 0 and deleted 0" in results["row-level-security"].detail
    assert "piper_alpha is stamped 'alpha'; no other profile points at it" == results["stamp"].detail
    assert "scram-sha-256 only" in results["access"].detail
    assert query(profile, project, "SELECT username, updated_at FROM alpha_users ORDER BY username") == before


def test_an_application_role_that_may_bypass_rls_fails(fresh_alpha) -> None:
    from services import credentials
    from services.database import connection

    profile, project = fresh_alpha
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER ROLE piper_app BYPASSRLS")
    results = _results(profile, project)
    assert _failed(results) == ["row-level-security"]
    assert "may bypass RLS" in results["row-level-security"].detail


def test_a_leaked_preference_in_piper_md_fails(fresh_alpha) -> None:
    from psycopg.types.json import Jsonb

    profile, project = fresh_alpha
    with connect(profile, project) as conn:
        conn.execute("UPDATE alpha_users SET preferences = %s WHERE username = 'alfy'",
                     (Jsonb({"contact": {"full_name": "Zanzibar Quuxley"}, "tone": "plain"}),))
        conn.commit()
    piper_md = project.config_dir / "PIPER.md"
    piper_md.write_text(piper_md.read_text() + "\nEscalate to zanzibar quuxley when unsure.\n")
    results = _results(profile, project)
    assert _failed(results) == ["piper-md"] and "PIPER.md:" in results["piper-md"].detail
    details = " ".join(r.detail for r in results.values())
    assert "Zanzibar" not in details and "Quuxley" not in details  # findings are redacted


def test_a_profile_audit_term_in_piper_md_fails(fresh_alpha) -> None:
    profile, project = fresh_alpha
    piper_md = project.config_dir / "PIPER.md"
    term = load_profile("dev", project).audit.terms[0].term
    piper_md.write_text(piper_md.read_text() + f"\nAsk {term.title()} first.\n")
    assert _failed(_results(profile, project)) == ["piper-md"]


def test_an_unreadable_piper_md_is_a_failed_check_that_says_why(fresh_alpha) -> None:
    profile, project = fresh_alpha
    (project.config_dir / "PIPER.md").unlink()
    results = _results(profile, project)
    assert _failed(results) == ["piper-md", "contexts"]
    assert results["piper-md"].detail.startswith(f"cannot read {project.config_dir / 'PIPER.md'}")
    assert results["contexts"].detail.startswith("could not run: ")


def test_two_profiles_on_one_database_fail(fresh_alpha) -> None:
    alpha, project = fresh_alpha
    path = project.environments_dir / "tester.yaml"
    data = yaml.safe_load(path.read_text())
    data["database"].update(port=alpha.database.port, name=alpha.database.name)
    path.write_text(yaml.safe_dump(data))
    results = _results(alpha, project)
    assert _failed(results) == ["stamp"]
    assert "profile 'tester' points at the same server and database" in results["stamp"].detail


def test_a_wrong_stamp_fails(fresh_alpha) -> None:
    profile, project = fresh_alpha
    with connect(profile, project) as conn:
        conn.execute("UPDATE piper_metadata SET value = 'tester' WHERE key = 'environment'")
        conn.commit()
    results = _results(profile, project)
    assert not results["stamp"].passed
    assert "stamped for environment 'tester', not 'alpha'" in " ".join(r.detail for r in results.values())


def test_an_application_role_that_can_rewrite_the_stamp_fails_until_setup_repairs_it(fresh_alpha) -> None:
    profile, project = fresh_alpha
    with connect(profile, project) as conn:  # what a hand pg_restore --clean leaves behind
        conn.execute("GRANT UPDATE ON piper_metadata TO piper_app")
        conn.commit()
    results = _results(profile, project)
    assert _failed(results) == ["stamp"]
    assert "piper_app may change the environment stamp" in results["stamp"].detail
    report = set_up(profile, project)
    assert any("restored the privileges of piper_app" in change for change in report.changes)
    assert _failed(_results(profile, project)) == []


def test_an_application_role_that_can_read_the_event_log_fails_until_setup_repairs_it(fresh_alpha) -> None:
    profile, project = fresh_alpha
    with connect(profile, project) as conn:
        conn.execute("GRANT SELECT, DELETE ON user_data_events TO piper_app")
        conn.commit()
    results = _results(profile, project)
    assert _failed(results) == ["row-level-security"]
    assert "piper_app can reach user_data_events, which only admin tasks may" in results["row-level-security"].detail
    set_up(profile, project)
    assert _failed(_results(profile, project)) == []


@pytest.mark.parametrize("which", ["env file", "data root"])
def test_loose_file_permissions_fail(fresh_alpha, which: str) -> None:
    profile, project = fresh_alpha
    path = project.env_file if which == "env file" else project.data_root
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(mode | 0o044)
    try:
        results = _results(profile, project)
        assert _failed(results) == ["access"]
        expected = ".env is readable by others" if which == "env file" else f"{project.data_root} is open to other accounts"
        assert expected in results["access"].detail
    finally:
        path.chmod(mode)
