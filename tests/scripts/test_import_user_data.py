"""scripts/import_user_data.py: verify, show, ask, then import in one transaction; exit codes and messages.

Documents come from the shared alpha environment (the `exported` fixture) and go into the shared
tester one, each test with a user of its own.
"""

from __future__ import annotations

import json
import sys

import pytest

from scripts import create_test_alpha_user, export_user_data, import_user_data
from services import credentials
from services.database import connection
from services.user_context_service import UserContextService
from tests.support.cli import export_user, run_cli
from tests.support.databases import set_preferences, user_row
from tests.support.fakes import HOSTILE


def test_round_trip_alpha_to_tester_and_back_keeps_every_value(alpha_env, tester, exported, tmp_path, capsys, monkeypatch) -> None:
    name, path = exported
    t_profile, t_project = tester
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--env", "tester"]) == 0
    assert "imported" in capsys.readouterr().out
    assert user_row(t_profile, t_project, name)[1] == HOSTILE
    again = export_user(t_project, "tester", name)
    assert again.returncode == 0
    assert json.loads(again.stdout)["payload"]["preferences"] == HOSTILE
    assert json.loads(again.stdout)["source"]["environment"] == "tester"
    # Importing the same file twice changes nothing the second time.
    with connection.connect(credentials.target(t_profile, t_project, "owner")) as conn:
        before = conn.execute("SELECT updated_at FROM alpha_users WHERE username = %s", (name,)).fetchone()
        count = conn.execute("SELECT count(*) FROM user_data_events WHERE event = 'import'").fetchone()
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--env", "tester"]) == 0
    assert "already holds this data; nothing changed" in capsys.readouterr().out
    with connection.connect(credentials.target(t_profile, t_project, "owner")) as conn:
        assert conn.execute("SELECT updated_at FROM alpha_users WHERE username = %s", (name,)).fetchone() == before
        assert conn.execute("SELECT count(*) FROM user_data_events WHERE event = 'import'").fetchone() == count
        recorded = conn.execute("SELECT source_environment, checksum, actor FROM user_data_events "
                                "WHERE event = 'import' AND username = %s", (name,)).fetchall()
    assert recorded[0][0] == "alpha" and recorded[0][1] == json.loads(path.read_bytes())["checksum"]["value"]


def test_a_conflict_is_refused_unless_merge_or_replace(alpha_env, tester, exported, capsys, monkeypatch) -> None:
    name, path = exported
    t_profile, t_project = tester
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    assert create_test_alpha_user.main(["--username", name, "--env", "tester"]) == 0
    set_preferences(t_profile, t_project, name, {"local": "only here", "nulls": "was text"})
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--env", "tester"]) == 1
    assert "already exists in tester with other data; pass --merge" in capsys.readouterr().err
    assert user_row(t_profile, t_project, name)[1] == {"local": "only here", "nulls": "was text"}
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--merge", "--env", "tester"]) == 0
    assert user_row(t_profile, t_project, name)[1] == {**HOSTILE, "local": "only here"}
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--replace", "--env", "tester"]) == 0
    assert user_row(t_profile, t_project, name)[1] == HOSTILE


def test_import_asks_and_dry_run_writes_nothing(alpha_env, tester, exported, capsys, monkeypatch) -> None:
    name, path = exported
    t_profile, t_project = tester
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    result = run_cli([sys.executable, "scripts/import_user_data.py", "--username", name, "--data", str(path),
                      "--env", "tester"], t_project, input="")
    assert result.returncode == 1 and "pass --yes" in result.stderr and "action: create user" in result.stderr
    assert import_user_data.main(["--username", name, "--data", str(path), "--dry-run", "--env", "tester"]) == 0
    assert "dry run: nothing was written" in capsys.readouterr().out
    assert user_row(t_profile, t_project, name) is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw.replace(b'"nulls": null', b'"nulls": 1', 1), "does not match its checksum"),
        (lambda raw: raw.replace(b'"nested": [1', b'"nested": [ 1', 1), "does not match its checksum"),
        (lambda raw: raw.replace(b',\n "payload": ', b', "payload": ', 1), "reformatted or changed after export"),
        (lambda raw: raw[: len(raw) * 2 // 3], "not valid JSON"),
        (lambda raw: b'{"format": "something-else"}', "is not a piper-ops user export"),
        (lambda raw: b"\xff\xfe not text", "is not UTF-8"),
    ],
)
def test_tampered_truncated_or_foreign_files_are_refused(alpha_env, tester, exported, tmp_path, capsys, damage, message, monkeypatch) -> None:
    name, path = exported
    t_profile, t_project = tester
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    bad = tmp_path / "bad.json"
    bad.write_bytes(damage(path.read_bytes()))
    assert bad.read_bytes() != path.read_bytes()
    assert import_user_data.main(["--username", name, "--data", str(bad), "--yes", "--env", "tester"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert user_row(t_profile, t_project, name) is None


def test_the_username_must_match_the_document(alpha_env, tester, exported, capsys, monkeypatch) -> None:
    name, path = exported
    monkeypatch.setenv("PIPER_ROOT", str(tester[1].root))
    assert import_user_data.main(["--username", "fake.someone", "--data", str(path), "--yes", "--env", "tester"]) == 2
    assert f"holds user {name!r}, not 'fake.someone'" in capsys.readouterr().err


@pytest.mark.slow
def test_ten_megabyte_preferences_round_trip(alpha_env, tester, tmp_path, capsys, monkeypatch) -> None:
    profile, project = alpha_env
    t_profile, t_project = tester
    big = {f"key.{i}": {"text": "ü✓" * 200 + str(i), "list": list(range(20)), "none": None} for i in range(9000)}
    assert len(json.dumps(big)) > 10_000_000
    assert create_test_alpha_user.main(["--username", "fake.big", "--env", "alpha"]) == 0
    set_preferences(profile, project, "fake.big", big)
    out = tmp_path / "big.json"
    assert export_user_data.main(["--username", "fake.big", "--output", str(out), "--env", "alpha"]) == 0
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    assert import_user_data.main(["--username", "fake.big", "--data", str(out), "--yes", "--env", "tester"]) == 0
    assert user_row(t_profile, t_project, "fake.big")[1] == big


def test_context_of_an_imported_user_carries_their_preferences(alpha_env, tester, exported, monkeypatch) -> None:
    name, path = exported
    t_profile, t_project = tester
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--env", "tester"]) == 0
    context = UserContextService(t_profile, t_project).get_context(name)
    assert context["nested"] == HOSTILE["nested"] and "identity" in context
