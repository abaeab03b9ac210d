"""`invoke onboard` by flags, unattended: a real subprocess with no terminal, on a temporary project.

The wizard in a real terminal is tests/scripts/test_onboard_terminal.py.
"""

from __future__ import annotations

import json

import pytest

from services.profiles import load_profile
from tests.support.cli import INVOKE, project_files, run_cli
from tests.support.databases import query, user_row

NAME, EMAIL = "fake.tester", "fake.tester@example.invalid"


def _onboard(project, *flags: str):  # type: ignore[no-untyped-def]
    return run_cli([*INVOKE, "onboard", *flags], project, input="")  # stdin a pipe, as in CI


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(("flags", "missing"), [
    ((), "--username NAME, --email ADDRESS, --data FILE or --no-import"),
    (("--username", NAME, "--no-import"), "--email ADDRESS"),
    (("--username", NAME, "--email", EMAIL), "--data FILE or --no-import"),
])
def test_without_a_terminal_a_missing_answer_is_one_line_exit_2_and_changes_nothing(project, flags, missing) -> None:
    before = project_files(project.root)
    result = _onboard(project, *flags)
    assert result.returncode == 2
    assert _one_line(result.stderr) == (f"error: no terminal to ask on; pass {missing} (or --yes to take the "
                                        "defaults); see --help")
    assert project_files(project.root) == before


@pytest.mark.parametrize(("flags", "message"), [
    (("--username", "Fake Tester"), "error: username 'Fake Tester' is not valid; use 2-63 lower-case letters"),
    (("--username", NAME, "--email", "fake.tester"), "error: email 'fake.tester' is not a valid address"),
    (("--username", NAME, "--data", "no-such-file.json"), "error: no-such-file.json does not exist; check the path"),
    (("--username", NAME, "--data", "/dev/zero"), "error: /dev/zero is not a regular file"),
    (("--username", NAME, "--data", "x.json", "--no-import"),
     "error: argument --no-import: not allowed with argument --data"),
    (("--env", "production",), "error: environment 'production' is hosted: its users arrive by `invoke import-user"),
    (("--env", "nosuch",), "error: unknown environment 'nosuch'"),
])
def test_a_bad_answer_by_flag_is_one_line_exit_2_and_changes_nothing(project, flags, message) -> None:
    before = project_files(project.root)
    result = _onboard(project, *flags, "--yes")
    assert result.returncode == 2, result.stderr
    assert _one_line(result.stderr).startswith(message)
    assert project_files(project.root) == before


def test_by_flags_it_sets_up_creates_imports_checks_and_says_what_next_then_a_second_run_changes_nothing(
        project, tmp_path) -> None:
    data = tmp_path / "mine.json"
    data.write_text(json.dumps({"piper_personal_data": 1, "username": NAME, "preferences": {"tone": "plain"}}))
    result = _onboard(project, "--username", NAME, "--email", EMAIL, "--data", str(data), "--yes")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tester: set up" in out and "started the server" in out
    assert f"created user {NAME} ({EMAIL}) in tester" in out
    assert f"migrated {data.name} into {NAME} in tester (added: tone)" in out
    assert "PASS  row-level-security" in out and "FAIL" not in out
    assert f"onboard: {NAME} ({EMAIL}) is ready in tester" in out
    assert "next:\n  `invoke status`" in out
    assert f"`invoke export-user --env tester --username {NAME} --output exports/{NAME}.json`" in out
    assert "onboard will, in tester:" in result.stderr  # the plan, before anything was done
    profile = load_profile("tester", project)
    assert user_row(profile, project, NAME) == (EMAIL, {"tone": "plain"})
    assert "PIPER_ENV=tester" in (project.root / ".env").read_text()

    files = {k: v for k, v in project_files(project.root).items() if not k.startswith("postgres_data")}
    rows = query(profile, project, "SELECT username, email, preferences, updated_at FROM alpha_users")
    again = _onboard(project, "--username", NAME, "--email", EMAIL, "--data", str(data), "--yes")
    assert again.returncode == 0, again.stderr
    assert "tester: the database is already in place; nothing changed" in again.stdout
    assert f"onboard: {NAME} was already onboarded in tester; nothing changed" in again.stdout
    assert f"{NAME} is already onboarded in tester" in again.stderr
    assert {k: v for k, v in project_files(project.root).items() if not k.startswith("postgres_data")} == files
    assert query(profile, project, "SELECT username, email, preferences, updated_at FROM alpha_users") == rows

    # --yes alone takes every default: the profile's default user, no data.
    other = _onboard(project, "--yes")
    assert other.returncode == 0, other.stderr
    assert "created user tester123 (tester123@example.invalid) in tester" in other.stdout
    # An answer the database refuses is refused before anything changes.
    clash = _onboard(project, "--username", "fake.second", "--email", EMAIL, "--no-import", "--yes")
    assert clash.returncode == 2
    assert _one_line(clash.stderr) == (f"error: email '{EMAIL}' already belongs to user '{NAME}' in tester; "
                                       "choose another email")
    assert user_row(profile, project, "fake.second") is None


def test_an_export_is_imported_with_import_users_consent_screen(project, tmp_path) -> None:
    first = _onboard(project, "--username", NAME, "--email", EMAIL, "--no-import", "--yes")
    assert first.returncode == 0, first.stderr
    exported = run_cli([*INVOKE, "export-user", "--env", "tester", "--username", NAME, "--output",
                        str(tmp_path / "me.json")], project)
    assert exported.returncode == 0, exported.stderr
    deleted = run_cli([*INVOKE, "delete-user", "--env", "tester", "--username", NAME, "--yes"], project)
    assert deleted.returncode == 0, deleted.stderr
    # Without --yes there is no one to consent: refused, nothing changed.
    refused = _onboard(project, "--username", NAME, "--email", EMAIL, "--data", str(tmp_path / "me.json"))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == ("error: Onboard fake.tester into tester: no terminal to "
                                                       "confirm on; pass --yes to proceed")
    profile = load_profile("tester", project)
    assert user_row(profile, project, NAME) is None
    result = _onboard(project, "--username", NAME, "--data", str(tmp_path / "me.json"), "--yes")
    assert result.returncode == 0, result.stderr
    assert f"import {NAME} into tester from {tmp_path / 'me.json'} (exported from tester at" in result.stderr
    assert f"  action: create user {NAME} ({EMAIL})" in result.stderr
    assert f"imported {NAME} into tester from me.json (create): id " in result.stdout
    assert user_row(profile, project, NAME) == (EMAIL, {})


def test_with_the_server_stopped_when_it_asks_the_answers_are_checked_once_setup_has_started_it(
        project, tmp_path) -> None:
    first = _onboard(project, "--username", NAME, "--email", EMAIL, "--no-import", "--yes")
    assert first.returncode == 0, first.stderr
    profile = load_profile("tester", project)
    export = tmp_path / "me.json"
    exported = run_cli([*INVOKE, "export-user", "--env", "tester", "--username", NAME, "--output", str(export)],
                       project)
    assert exported.returncode == 0, exported.stderr

    def stopped_then(*flags: str):  # type: ignore[no-untyped-def]
        stopped = run_cli([*INVOKE, "db-stop", "--env", "tester"], project)
        assert stopped.returncode == 0, stopped.stderr
        return _onboard(project, *flags, "--yes")

    # Another user's email: refused in one line once the server runs, before any step creates a user.
    clash = stopped_then("--username", "fake.second", "--email", EMAIL, "--no-import")
    assert "(the server of tester is not running: what it holds for fake.second is checked once setup has " \
           "started it" in clash.stderr
    assert clash.returncode == 2
    assert clash.stderr.splitlines()[-1] == (
        f"error: email '{EMAIL}' already belongs to user '{NAME}' in tester; choose another email (checked once "
        "setup had started the server of tester, which was not running when onboard asked; the import and the "
        "setup steps were not run)")
    assert "failed (exit" not in clash.stderr and user_row(profile, project, "fake.second") is None

    # The same export again: nothing to import, nothing changed.
    same = stopped_then("--username", NAME, "--email", EMAIL, "--data", str(export))
    assert same.returncode == 0, same.stderr
    assert f"user {NAME} already exists in tester" in same.stdout and "imported" not in same.stdout

    # The user holds other data than the export now: the import consented to was a create; it is refused.
    data = tmp_path / "mine.json"
    data.write_text(json.dumps({"piper_personal_data": 1, "username": NAME, "preferences": {"tone": "plain"}}))
    migrated = run_cli([*INVOKE, "migrate-personal-data", "--env", "tester", "--username", NAME, "--data-file",
                        str(data)], project)
    assert migrated.returncode == 0, migrated.stderr
    other = stopped_then("--username", NAME, "--email", EMAIL, "--data", str(export))
    assert other.returncode == 1
    assert other.stderr.splitlines()[-1] == (f"error: user '{NAME}' already exists in tester (its server was not "
                                             "running when onboard asked); run onboard again to see what the "
                                             "import would change")
    assert user_row(profile, project, NAME) == (EMAIL, {"tone": "plain"})
    # Run again, the server running: import-user's own answer, with what to pass.
    again = _onboard(project, "--username", NAME, "--email", EMAIL, "--data", str(export), "--yes")
    assert again.returncode == 1
    assert _one_line(again.stderr).startswith(f"error: user '{NAME}' already exists in tester with other data than "
                                              "me.json; pass --merge")
