"""`invoke onboard` in a real terminal: a pseudo-terminal driven by pexpect, as a person at a keyboard.

The defaults are shown, a wrong answer is told and asked again, and Ctrl-C (or Ctrl-D) at any
question leaves the project as it was: its files, its .env and its database rows.
"""

from __future__ import annotations

import re

import pexpect
import pytest

from services.profiles import load_profile
from tests.support.cli import INVOKE, project_files, run_cli, spawn_in_terminal
from tests.support.databases import query, user_row

NAME, EMAIL = "fake.tester", "fake.tester@example.invalid"
USERNAME_Q = re.escape("Username [tester123]: ")
DATA_Q = re.escape("empty for none): ")
CONFIRM_Q = re.escape(f"Onboard {NAME} into tester? [y/N] ")


def _finish(child: pexpect.spawn) -> tuple[str, int]:
    child.expect(pexpect.EOF)
    child.close()
    return child.before, child.exitstatus


def _rows(project) -> list[tuple]:  # type: ignore[no-untyped-def]
    profile = load_profile("tester", project)
    return query(profile, project, "SELECT username, email, preferences, updated_at FROM alpha_users ORDER BY 1")


def test_the_wizard_shows_defaults_asks_again_after_a_wrong_answer_and_onboards(project) -> None:
    child = spawn_in_terminal([*INVOKE, "onboard"], project)
    child.expect("Ctrl-C at any question changes nothing")
    child.expect(USERNAME_Q)
    child.sendline("Fake Tester")
    child.expect("username 'Fake Tester' is not valid; use 2-63 lower-case letters")
    child.expect(USERNAME_Q)
    child.sendline(NAME)
    child.expect(DATA_Q)
    child.sendline("no-such-file.json")
    child.expect("no-such-file.json does not exist; check the path")
    child.expect(DATA_Q)
    child.sendline("")
    child.expect(re.escape(f"Email [{EMAIL}]: "))  # derived from the username
    child.sendline("fake.tester-at-example")
    child.expect("email 'fake.tester-at-example' is not a valid address")
    child.expect(re.escape(f"Email [{EMAIL}]: "))
    child.sendline("")  # the default
    child.expect("onboard will, in tester:")
    child.expect(CONFIRM_Q)
    child.sendline("y")
    child.expect(f"created user {NAME} \\({re.escape(EMAIL)}\\) in tester")
    output, code = _finish(child)
    assert code == 0, output
    assert f"onboard: {NAME} ({EMAIL}) is ready in tester" in output
    assert "next:" in output and "`invoke status`" in output
    assert user_row(load_profile("tester", project), project, NAME) == (EMAIL, {})

    # Again, with the same answers: the email offered is the user's own, nothing is asked to confirm.
    child = spawn_in_terminal([*INVOKE, "onboard", "--no-import"], project)
    child.expect(USERNAME_Q)
    child.sendline(NAME)
    child.expect(re.escape(f"Email [{EMAIL}]: "))
    child.sendline("")
    output, code = _finish(child)
    assert code == 0, output
    assert f"{NAME} is already onboarded in tester" in output
    assert f"onboard: {NAME} was already onboarded in tester; nothing changed" in output


@pytest.mark.parametrize("where", ["username", "data", "email", "confirm"])
def test_ctrl_c_at_any_question_leaves_a_fresh_project_as_it_was(project, where) -> None:
    before = project_files(project.root)
    child = spawn_in_terminal([*INVOKE, "onboard"], project)
    questions = (("username", USERNAME_Q, NAME), ("data", DATA_Q, ""), ("email", re.escape(f"Email [{EMAIL}]: "), ""),
                 ("confirm", CONFIRM_Q, "y"))
    for name, question, answer in questions:
        child.expect(question)
        if name == where:
            child.sendcontrol("c")
            break
        child.sendline(answer)
    output, code = _finish(child)
    assert code == 1
    assert "error: interrupted; nothing was changed" in output
    assert project_files(project.root) == before
    assert not (project.root / ".env").exists() and not (project.root / "postgres_data").exists()


def test_ctrl_c_or_no_at_the_import_consent_leaves_a_set_up_project_as_it_was(fresh_tester, tmp_path) -> None:
    profile, project = fresh_tester
    created = run_cli([*INVOKE, "create-user", "--env", "tester", "--username", NAME, "--email", EMAIL], project)
    assert created.returncode == 0, created.stderr
    export = tmp_path / "me.json"
    assert run_cli([*INVOKE, "export-user", "--env", "tester", "--username", NAME, "--output", str(export)],
                   project).returncode == 0
    assert run_cli([*INVOKE, "delete-user", "--env", "tester", "--username", NAME, "--yes"], project).returncode == 0
    files, env_file, rows = project_files(project.root), (project.root / ".env").read_bytes(), _rows(project)
    for key in ("c", "n"):
        child = spawn_in_terminal([*INVOKE, "onboard", "--username", NAME, "--data", str(export)], project)
        child.expect(re.escape(f"Email [{EMAIL}]: "))  # the export's own
        child.sendline("")
        child.expect(CONFIRM_Q)
        child.sendline("y")
        child.expect(re.escape(f"import {NAME} into tester from {export} (exported from tester at"))
        child.expect(re.escape(f"action: create user {NAME} ({EMAIL})"))
        child.expect(re.escape(f"Import {NAME} into tester? [y/N] "))
        if key == "c":
            child.sendcontrol("c")
        else:
            child.sendline("n")
        output, code = _finish(child)
        assert code == 1, output
        assert ("error: interrupted" if key == "c" else "error: not confirmed; nothing was changed") in output
        assert project_files(project.root) == files
        assert (project.root / ".env").read_bytes() == env_file
        assert _rows(project) == rows


def test_end_of_input_at_a_question_is_no_answer_and_changes_nothing(project) -> None:
    before = project_files(project.root)
    child = spawn_in_terminal([*INVOKE, "onboard"], project)
    child.expect(USERNAME_Q)
    child.sendeof()
    output, code = _finish(child)
    assert code == 1
    assert "error: no answer to 'Username'; nothing was changed" in output
    assert project_files(project.root) == before
