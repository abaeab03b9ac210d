"""services/onboarding.py: every answer checked before anything is written, then setup, user, data, isolation.

Against real PostgreSQL servers in temporary projects (the `project` fixture: nothing set up yet).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services import onboarding
from services.errors import UsageError
from services.profiles import load_profile
from services.users import accounts, documents, imports
from tests.support.cli import export_user, project_files
from tests.support.databases import query, set_preferences, user_row
from tests.support.projects import run_script_step

NAME, EMAIL = "fake.tester", "fake.tester@example.invalid"


def _personal_file(tmp_path: Path, username: str = NAME, **preferences: object) -> Path:
    path = tmp_path / f"{username}-data.json"
    path.write_text(json.dumps({"piper_personal_data": 1, "username": username,
                                "preferences": preferences or {"tone": "plain", "topics": ["fake"]}}))
    return path


def _quiet(stage: str, detail: object) -> None:
    pass


def test_planning_checks_every_answer_and_writes_nothing(project, tmp_path) -> None:
    tester = load_profile("tester", project)
    before = project_files(project.root)
    with pytest.raises(UsageError, match="username 'Fake Tester' is not valid"):
        onboarding.plan_onboarding(tester, project, "Fake Tester", EMAIL, None)
    with pytest.raises(UsageError, match="email 'nobody' is not a valid address"):
        onboarding.plan_onboarding(tester, project, NAME, "nobody", None)
    with pytest.raises(documents.UserDataError, match="holds the data of user 'someone.else'"):
        onboarding.read_data(_personal_file(tmp_path, "someone.else"), NAME)
    with pytest.raises(UsageError, match="does not exist"):
        onboarding.read_data(tmp_path / "missing.json", NAME)
    data = onboarding.read_data(_personal_file(tmp_path), NAME)
    assert data.kind == "personal-data"
    with pytest.raises(UsageError, match="'alpha' takes no personal-data file"):
        onboarding.plan_onboarding(load_profile("alpha", project), project, NAME, EMAIL, data)
    with pytest.raises(UsageError, match="is hosted: its users arrive by `invoke import-user"):
        onboarding.plan_onboarding(load_profile("production", project), project, NAME, EMAIL, None)
    plan = onboarding.plan_onboarding(tester, project, NAME, EMAIL, data)
    assert plan.found is None and not plan.in_place  # no server yet: nothing known, nothing started
    assert [script for script, _ in plan.steps.steps] == ["create_test_alpha_user", "migrate_personal_data"]
    assert plan.profile.default_user.username == NAME  # the steps act for the tester, not for tester123
    assert project_files(project.root) == before
    assert not (project.root / ".env").exists() and not (project.root / "postgres_data").exists()


def test_onboarding_sets_up_creates_migrates_checks_and_a_second_run_changes_nothing(project, tmp_path,
                                                                                   monkeypatch) -> None:
    monkeypatch.setenv("PIPER_ROOT", str(project.root))
    tester = load_profile("tester", project)
    data = onboarding.read_data(_personal_file(tmp_path), NAME)
    stages: list[str] = []
    plan = onboarding.plan_onboarding(tester, project, NAME, EMAIL, data)
    result = onboarding.run_onboarding(plan, run_script_step, lambda stage, detail: stages.append(stage))
    assert result.changed and result.isolated and result.setup.changes
    assert stages == ["setup", "setup", "steps", "steps", "isolation", "isolation"]
    assert user_row(tester, project, NAME) == (EMAIL, {"tone": "plain", "topics": ["fake"]})
    assert [r[0] for r in query(tester, project, "SELECT username FROM alpha_users")] == [NAME]  # no tester123
    events = query(tester, project, "SELECT event, checksum FROM user_data_events ORDER BY occurred_at")
    assert events == [("migrate", data.personal.sha256)]
    stamp = query(tester, project, "SELECT updated_at FROM alpha_users")

    env_before = (project.root / ".env").read_bytes()
    again = onboarding.plan_onboarding(tester, project, NAME, EMAIL, onboarding.read_data(data.path, NAME))
    assert again.found == onboarding.Found(EMAIL, None, True) and again.in_place
    second = onboarding.run_onboarding(again, run_script_step, _quiet)
    assert not second.changed and not second.setup.changes and second.isolated
    assert (project.root / ".env").read_bytes() == env_before
    assert query(tester, project, "SELECT updated_at FROM alpha_users") == stamp
    assert query(tester, project, "SELECT count(*) FROM user_data_events")[0][0] == 1

    # With the server running, answers are checked against what the database holds, before anything changes.
    assert onboarding.default_email(tester, project, NAME) == EMAIL
    with pytest.raises(UsageError, match="already exists in tester with another email"):
        onboarding.plan_onboarding(tester, project, NAME, "other.fake@example.invalid", None)
    with pytest.raises(UsageError, match=f"email '{EMAIL}' already belongs to user '{NAME}'"):
        onboarding.check_email(tester, project, "fake.second", EMAIL)


def test_an_export_is_imported_with_import_users_plan_and_its_conflicts(project, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PIPER_ROOT", str(project.root))
    tester = load_profile("tester", project)
    first = onboarding.plan_onboarding(tester, project, NAME, EMAIL, None)
    onboarding.run_onboarding(first, run_script_step, _quiet)
    accounts_pref = {"fake": {"nested": [1, 2]}, "tone": "warm"}
    set_preferences(tester, project, NAME, accounts_pref)
    exported = export_user(project, "tester", NAME)
    assert exported.returncode == 0, exported.stderr
    path = tmp_path / "export.json"
    path.write_bytes(exported.stdout)
    data = onboarding.read_data(path, NAME)
    assert data.kind == "export" and data.email == EMAIL
    with pytest.raises(documents.UserDataError, match="holds user 'fake.tester', not 'fake.other'"):
        onboarding.read_data(path, "fake.other")

    # The user exists with other data: a conflict, refused before anything changes unless --merge or --replace.
    set_preferences(tester, project, NAME, {"local": "only here"})
    with pytest.raises(imports.ImportConflict, match="pass --merge"):
        onboarding.plan_onboarding(tester, project, NAME, EMAIL, data)
    assert user_row(tester, project, NAME)[1] == {"local": "only here"}
    merge = onboarding.plan_onboarding(tester, project, NAME, EMAIL, data, mode="merge")
    assert merge.import_plan.action == "merge" and not merge.in_place
    result = onboarding.run_onboarding(merge, run_script_step, _quiet)
    assert result.imported.action == "merge" and result.changed
    assert user_row(tester, project, NAME)[1] == {**accounts_pref, "local": "only here"}

    # Deleted, then onboarded again from the export: import-user creates the user; the steps find it.
    accounts.delete_user(tester, project, NAME, confirmed=True)
    plan = onboarding.plan_onboarding(tester, project, NAME, EMAIL, data)
    assert plan.import_plan.action == "create"
    result = onboarding.run_onboarding(plan, run_script_step, _quiet)
    assert result.imported.action == "create" and result.isolated
    assert user_row(tester, project, NAME) == (EMAIL, accounts_pref)
    again = onboarding.plan_onboarding(tester, project, NAME, EMAIL, data)
    assert again.import_plan.action == "unchanged" and again.in_place
    assert not onboarding.run_onboarding(again, run_script_step, _quiet).changed


def test_an_export_into_a_fresh_project_is_planned_without_a_server_and_applied_once_it_runs(
        project, tester, tmp_path, monkeypatch) -> None:
    shared_profile, shared_project = tester
    name = "fake.moved"
    monkeypatch.setenv("PIPER_ROOT", str(shared_project.root))
    assert run_script_step("create_test_alpha_user", ["--username", name, "--env", "tester"]) == 0
    exported = export_user(shared_project, "tester", name)
    assert exported.returncode == 0, exported.stderr
    path = tmp_path / "moved.json"
    path.write_bytes(exported.stdout)

    monkeypatch.setenv("PIPER_ROOT", str(project.root))
    profile = load_profile("tester", project)
    data = onboarding.read_data(path, name)
    assert onboarding.default_email(profile, project, name, data) == f"{name}@example.invalid"
    plan = onboarding.plan_onboarding(profile, project, name, f"{name}@example.invalid", data)
    assert plan.found is None and plan.import_plan.action == "create"
    assert not (project.root / ".env").exists()
    result = onboarding.run_onboarding(plan, run_script_step, _quiet)
    assert result.imported.action == "create" and result.isolated
    assert user_row(profile, project, name) == (f"{name}@example.invalid", {})
    assert query(profile, project, "SELECT event, source_environment FROM user_data_events") == [("import", "tester")]
