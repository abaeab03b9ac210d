"""services/environments/steps.py: the profile's setup steps, planned before setup changes anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.environments import steps
from services.errors import PiperError, UsageError
from services.profiles import load_profile
from services.project import Project
from tests.support.cli import INVOKE, run_cli
from tests.support.databases import query
from tests.support.projects import set_up


def _data_file(path: Path, username: str, preferences: dict) -> Path:
    path.write_text(json.dumps({"piper_personal_data": 1, "username": username, "preferences": preferences}))
    return path


def test_the_plan_fills_in_the_profile_and_the_environment(project: Project) -> None:
    plan = steps.plan_setup_steps(load_profile("dev", project), project)
    data = str(project.root / "private" / "dev_user_data.json")
    assert plan.steps == (
        ("create_test_alpha_user", ("--username", "xian", "--email", "xian@example.invalid", "--env", "dev")),
        ("migrate_personal_data", ("--username", "xian", "--data-file", data, "--env", "dev")),
    )
    assert plan.skipped == ()


def test_an_optional_step_without_its_data_file_is_skipped_and_a_given_one_is_used(project: Project, tmp_path,
                                                                                   monkeypatch) -> None:
    tester = load_profile("tester", project)
    plan = steps.plan_setup_steps(tester, project)
    assert [script for script, _ in plan.steps] == ["create_test_alpha_user"]
    assert plan.skipped == ("migrate_personal_data (no data_file)",)
    # A file given at setup is relative to where the user stands.
    _data_file(tmp_path / "mine.json", "tester123", {"tone": "mine"})
    monkeypatch.chdir(tmp_path)
    plan = steps.plan_setup_steps(tester, project, "mine.json")
    assert plan.skipped == () and plan.steps[1] == (
        "migrate_personal_data", ("--username", "tester123", "--data-file", str(tmp_path / "mine.json"), "--env", "tester"))
    with pytest.raises(UsageError, match=r"nowhere\.json \(--data-file\) does not exist"):
        steps.plan_setup_steps(tester, project, "nowhere.json")


def test_steps_run_in_order_and_the_first_failure_stops_them_with_its_exit_code(project: Project) -> None:
    plan = steps.plan_setup_steps(load_profile("alpha", project), project)
    ran: list[tuple[str, list[str]]] = []
    steps.run_setup_steps(plan, lambda script, argv: ran.append((script, argv)) or 0)
    assert [script for script, _ in ran] == ["create_test_alpha_user", "migrate_personal_data"]
    assert ran[1][1] == ["--username", "alfy", "--skip-migration", "--env", "alpha"]
    ran.clear()
    with pytest.raises(PiperError) as caught:
        steps.run_setup_steps(plan, lambda script, argv: ran.append((script, argv)) or 2)
    assert caught.value.exit_code == 2 and len(ran) == 1
    assert str(caught.value).startswith("setup step `create_test_alpha_user --username alfy --email alfy@example.invalid "
                                        "--env alpha` failed (exit 2)")


def test_dev_setup_without_the_pms_data_file_stops_before_changing_anything(project, capsys) -> None:
    (project.root / "private" / "dev_user_data.json").unlink()
    with pytest.raises(UsageError, match=r"personal_data.data_file of dev\) does not exist; put the personal-data file there"):
        set_up(load_profile("dev", project), project)
    assert not (project.root / "postgres_data" / "dev").exists() and not project.env_file.exists()
    result = run_cli([*INVOKE, "setup", "--env", "dev"], project)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stdout == ""
    assert not (project.root / "postgres_data" / "dev").exists()
    # Given at setup time instead, the file is used.
    other = project.root / "elsewhere.json"
    other.write_text(json.dumps({"piper_personal_data": 1, "username": "xian", "preferences": {"from": "setup flag"}}))
    set_up(load_profile("dev", project), project, data_file=str(other))
    assert query(load_profile("dev", project), project, "SELECT preferences FROM alpha_users WHERE username = 'xian'") == [
        ({"from": "setup flag"},)]


def test_setup_with_someone_elses_data_file_exits_2_like_the_script(project, tmp_path) -> None:
    other = _data_file(tmp_path / "data.json", "fake.someone.else", {"tone": "not tester123's"})
    result = run_cli([*INVOKE, "setup", "--env", "tester", "--data-file", str(other)], project)
    assert result.returncode == 2
    assert "holds the data of user 'fake.someone.else', not 'tester123'" in result.stderr
