"""Migration script tests (ADR-040's `tests/scripts/test_migration.py`): scripts/migrate_personal_data.py on real
databases, its output, exit codes and records (the service: tests/services/users/test_personal_data.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pexpect
import pytest

from scripts import create_test_alpha_user, migrate_personal_data
from services import credentials
from services.database import connection
from services.environments import steps
from services.profiles import load_profile
from services.users import documents
from tests.support.cli import INVOKE, cli_env, run_cli
from tests.support.projects import REPO, set_up


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


# --- the original product's bare object of preferences ------------------------------------------

#: The original Piper Morgan product's personal data, in its own shape (fake values).
ORIGINAL = {"q4_goals": ["fake goal one"], "projects": {"fake-one": {"status": "open"}}, "team": ["Fake Tester"]}


def _original(tmp_path: Path, name: str = "original.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(ORIGINAL))
    return path


def test_a_bare_object_without_a_terminal_or_yes_is_refused_in_one_line(alpha_env, fake_user, tmp_path) -> None:
    profile, project = alpha_env
    data = _original(tmp_path)
    for door in ([sys.executable, "scripts/migrate_personal_data.py"], [*INVOKE, "migrate-personal-data"]):
        result = run_cli([*door, "--username", fake_user, "--data-file", str(data), "--env", "alpha"], project, input="")
        assert result.returncode == 1, result.stderr
        assert result.stderr == (f"error: original.json names no user; its keys: projects, q4_goals, team. Migrate them "
                                 f"into the preferences of {fake_user} in alpha: no terminal to confirm on; "
                                 "pass --yes to proceed\n")
        assert result.stdout == ""
    assert _prefs(profile, project, fake_user) == {}
    assert _events(profile, project, fake_user, "migrate") == []


def test_a_bare_object_with_yes_is_migrated_recorded_and_not_asked_about_again(alpha_env, fake_user, tmp_path) -> None:
    profile, project = alpha_env
    data = _original(tmp_path)
    dry = run_cli([*INVOKE, "migrate-personal-data", "--username", fake_user, "--data-file", str(data), "--dry-run",
                   "--env", "alpha"], project, input="")
    assert dry.returncode == 0 and dry.stdout == (
        f"dry run: migrating original.json (a bare object of preferences, naming no user) into {fake_user} in alpha "
        "would change preferences (added: projects, q4_goals, team); nothing was written\n"), dry.stderr
    assert _events(profile, project, fake_user, "migrate") == []
    done = run_cli([sys.executable, "scripts/migrate_personal_data.py", "--username", fake_user, "--data-file", str(data),
                    "--yes", "--env", "alpha"], project, input="")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"migrated original.json (a bare object of preferences, naming no user) into "
                                  f"{fake_user} in alpha (added: projects, q4_goals, team); sha256 ")
    assert _prefs(profile, project, fake_user) == ORIGINAL
    events = _events(profile, project, fake_user, "migrate")
    assert [(e[0], e[1]) for e in events] == [("original.json", documents.sha256_hex(data.read_bytes()))]
    # Already applied: without --yes and without a terminal there is nothing to ask, and nothing changes.
    again = run_cli([sys.executable, "scripts/migrate_personal_data.py", "--username", fake_user, "--data-file",
                     str(data), "--env", "alpha"], project, input="")
    assert again.returncode == 0 and "was already migrated" in again.stdout and again.stderr == ""
    assert len(_events(profile, project, fake_user, "migrate")) == 1


def test_a_bare_object_asks_on_a_terminal_showing_its_keys_and_the_user(alpha_env, fake_user, tmp_path) -> None:
    profile, project = alpha_env
    data = _original(tmp_path)
    argv = ["scripts/migrate_personal_data.py", "--username", fake_user, "--data-file", str(data), "--env", "alpha"]
    question = (f"original.json names no user; its keys: projects, q4_goals, team. Migrate them into the preferences "
                f"of {fake_user} in alpha? [y/N] ")
    for answer, code in (("n", 1), ("y", 0)):
        child = pexpect.spawn(sys.executable, argv, cwd=str(REPO), env=cli_env(project), encoding="utf-8", timeout=60)
        try:
            child.expect_exact(question)
            child.sendline(answer)
            child.expect(pexpect.EOF)
        finally:
            child.close()
        assert child.exitstatus == code, child.before
        if answer == "n":
            assert "error: not confirmed; nothing was changed" in child.before
            assert _prefs(profile, project, fake_user) == {}
    assert f"migrated original.json (a bare object of preferences, naming no user) into {fake_user}" in child.before
    assert _prefs(profile, project, fake_user) == ORIGINAL


def test_setup_migrates_a_bare_data_file_into_the_profile_user_without_asking(project, tmp_path) -> None:
    # The PM's data in the original product's format, where dev's profile expects its data file.
    (project.root / "private" / "dev_user_data.json").write_text(json.dumps(ORIGINAL))
    dev = load_profile("dev", project)
    plan = steps.plan_setup_steps(dev, project)
    assert ("migrate_personal_data", ("--username", "xian", "--data-file",
                                      str(project.root / "private" / "dev_user_data.json"), "--yes", "--env", "dev")
            ) in plan.steps
    # Unattended (no terminal) and on a terminal alike: setup never asks, it says where the data went.
    result = run_cli([*INVOKE, "setup", "--env", "dev"], project, input="")
    assert result.returncode == 0, result.stderr
    assert ("migrated private/dev_user_data.json (a bare object of preferences, naming no user) into xian in dev "
            "(added: projects, q4_goals, team)") in result.stdout
    assert _prefs(dev, project, "xian") == ORIGINAL
    child = pexpect.spawn(INVOKE[0], [*INVOKE[1:], "setup", "--env", "dev"], cwd=str(REPO), env=cli_env(project),
                          encoding="utf-8", timeout=120)
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0 and "private/dev_user_data.json was already migrated" in child.before
    assert "[y/N]" not in child.before
    # A personal-data file (the envelope) gets no --yes: it names its user, and setup checks it is this one.
    _data_file(tmp_path, "xian", {"tone": "plain"}, "envelope.json")
    plan = steps.plan_setup_steps(dev, project, str(tmp_path / "envelope.json"))
    assert all("--yes" not in args for _, args in plan.steps)
