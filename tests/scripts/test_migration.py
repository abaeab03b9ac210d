"""Migration script tests (ADR-040's `tests/scripts/test_migration.py`): scripts/migrate_personal_data.py on real
databases, its output, exit codes and records (the service: tests/services/users/test_personal_data.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from scripts import create_test_alpha_user, migrate_personal_data
from services import credentials
from services.database import connection
from services.profiles import load_profile
from tests.support.cli import run_cli
from tests.support.projects import set_up


def _prefs(profile, project, username: str):
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        row = conn.execute("SELECT preferences FROM alpha_users WHERE username = %s", (username,)).fetchone()
    return row[0] if row else None


def _events(profile, project, username: str, event: str) -> list[tuple]:
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        return conn.execute("SELECT source, checksum, actor, environment FROM user_data_events "
                            "WHERE username = %s AND event = %s ORDER BY id", (username, event)).fetchall()


def _data_file(tmp_path: Path, username: str, preferences: dict, name: str = "data.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"piper_personal_data": 1, "username": username, "preferences": preferences}))
    return path


@pytest.fixture
def fake_user(alpha_env, request) -> str:
    name = "mig-" + request.node.name[-20:].lower().replace("_", "-").strip("-")
    assert create_test_alpha_user.main(["--username", name, "--env", "alpha"]) == 0
    return name


def test_data_file_is_deep_merged_recorded_and_not_applied_twice(alpha_env, fake_user, tmp_path, capsys) -> None:
    profile, project = alpha_env
    first = _data_file(tmp_path, fake_user, {"tone": "plain", "projects": {"one": {"status": "open"}}}, "first.json")
    assert migrate_personal_data.main(["--env", "alpha", "--username", fake_user, "--data-file", str(first)]) == 0
    second = _data_file(tmp_path, fake_user, {"projects": {"two": {"status": "new"}}, "tone": "dry"}, "second.json")
    assert migrate_personal_data.main(["--env", "alpha", "--username", fake_user, "--data-file", str(second)]) == 0
    assert _prefs(profile, project, fake_user) == {
        "tone": "dry", "projects": {"one": {"status": "open"}, "two": {"status": "new"}}}
    out = capsys.readouterr().out
    assert "added: projects, tone" in out and "changed: projects, tone" in out
    events = _events(profile, project, fake_user, "migrate")
    assert [len(e[1]) for e in events] == [64, 64] and events[0][3] == "alpha"
    # The user changes a preference; running the same file again must not undo it.
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        conn.execute("UPDATE alpha_users SET preferences = preferences || '{\"tone\": \"chosen-later\"}' WHERE username = %s",
                     (fake_user,))
        conn.commit()
    assert migrate_personal_data.main(["--env", "alpha", "--username", fake_user, "--data-file", str(second)]) == 0
    assert "was already migrated" in capsys.readouterr().out
    assert _prefs(profile, project, fake_user)["tone"] == "chosen-later"
    assert len(_events(profile, project, fake_user, "migrate")) == 2


def test_dry_run_shows_the_change_and_writes_nothing(alpha_env, fake_user, tmp_path, capsys) -> None:
    profile, project = alpha_env
    data = _data_file(tmp_path, fake_user, {"tone": "plain"})
    assert migrate_personal_data.main(["--env", "alpha", "--username", fake_user, "--data-file", str(data), "--dry-run"]) == 0
    assert "would change preferences (added: tone)" in capsys.readouterr().out
    assert _prefs(profile, project, fake_user) == {}
    assert _events(profile, project, fake_user, "migrate") == []


def test_skip_migration_only_verifies_the_user(alpha_env, capsys) -> None:
    assert migrate_personal_data.main(["--env", "alpha", "--username", "alfy", "--skip-migration"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("user alfy exists in alpha: id ") and "checked only, no personal data migrated" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--username", "nobody-here", "--skip-migration"], 2, "no user 'nobody-here' in environment alpha; users: "),
        (["--username", "alfy"], 2, "no data file given and environment 'alpha' names none"),
        (["--username", "alfy", "--data-file", "/nonexistent/x.json"], 2, "/nonexistent/x.json does not exist"),
        (["--username", "Not Valid", "--skip-migration"], 2, "username 'Not Valid' is not valid"),
        (["--data-file", "x.json"], 2, "the following arguments are required: --username"),
        (["--usernme", "alfy"], 2, "unknown option --usernme"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(alpha_env, capsys, args, code, message) -> None:
    profile, project = alpha_env
    before = _prefs(profile, project, "alfy")
    assert migrate_personal_data.main(["--env", "alpha", *args]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert _prefs(profile, project, "alfy") == before


def test_someone_elses_data_file_is_refused(alpha_env, tmp_path, capsys) -> None:
    profile, project = alpha_env
    before = _prefs(profile, project, "alfy")
    other = _data_file(tmp_path, "fake.other.person", {"secret": "not alfy's"})
    assert migrate_personal_data.main(["--env", "alpha", "--username", "alfy", "--data-file", str(other)]) == 2
    assert "holds the data of user 'fake.other.person', not 'alfy'" in capsys.readouterr().err
    assert _prefs(profile, project, "alfy") == before


def test_the_profile_data_file_is_used_for_dev_and_only_for_its_user(project, capsys) -> None:
    dev = load_profile("dev", project)
    set_up(dev, project)
    assert _prefs(dev, project, "xian") == {"tone": "fake-dev-tone", "projects": ["fake-project-one"]}
    assert create_test_alpha_user.main(["--username", "fake.second", "--env", "dev"]) == 0
    assert migrate_personal_data.main(["--username", "fake.second", "--env", "dev"]) == 2
    assert "holds the data of user 'xian', not 'fake.second'" in capsys.readouterr().err
    assert _prefs(dev, project, "fake.second") == {}


def test_migrate_script_runs_as_a_subprocess(alpha_env, fake_user, tmp_path) -> None:
    _, project = alpha_env
    data = _data_file(tmp_path, fake_user, {"tone": "subprocess"})
    result = run_cli([sys.executable, "scripts/migrate_personal_data.py", "--username", fake_user, "--data-file",
                      str(data), "--env", "alpha"], project)
    assert result.returncode == 0 and f"into {fake_user} in alpha (added: tone)" in result.stdout, result.stderr
