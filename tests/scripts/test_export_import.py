"""export_user_data, import_user_data, delete_user and accept_invitation: real databases, real files."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import (
    accept_invitation,
    create_test_alpha_user,
    delete_user,
    export_user_data,
    import_user_data,
)
from services import credentials
from services.database import connection
from services.profiles import Profile
from services.project import Project
from services.user_context_service import UserContextService
from services.users import documents, exports, imports, store
from tests.conftest import cli_env, run_cli

HOSTILE = {
    "ünïcödé ✓ 漢字 🎉": "ünïcödé ✓ 漢字 🎉",
    "nested": [1, [2, [3, None]], {"deep": [True, False, None]}],
    "numbers": [0, -1, 3.14159, 1e-10, 12345678901234567890, 1.5e10, -0.5],
    "nulls": None,
    "a.b.c": {"with \"quotes\" and 'single'": "back\\slash", "": "empty key"},
    "newline\nkey": "tab\there",
}


def _set_prefs(profile: Profile, project: Project, username: str, prefs: dict, table: str = "alpha_users") -> None:
    from psycopg.types.json import Jsonb

    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        conn.execute(f"UPDATE {table} SET preferences = %s WHERE username = %s", (Jsonb(prefs), username))
        conn.commit()


def _row(profile: Profile, project: Project, username: str, table: str = "alpha_users"):
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        return conn.execute(f"SELECT email, preferences FROM {table} WHERE username = %s", (username,)).fetchone()


def _export(project: Project, env: str, username: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/export_user_data.py", "--username", username, "--env", env, *extra],
                          cwd=Path(__file__).resolve().parents[2], env=cli_env(project), capture_output=True, check=False)


@pytest.fixture
def exported(alpha_env, tmp_path, request) -> tuple[str, Path]:
    profile, project = alpha_env
    name = "xfer-" + str(abs(hash(request.node.name)) % 10**8)
    assert create_test_alpha_user.main(["--username", name, "--env", "alpha"]) == 0
    _set_prefs(profile, project, name, HOSTILE)
    result = _export(project, "alpha", name)
    assert result.returncode == 0, result.stderr
    path = tmp_path / f"{name}.json"
    path.write_bytes(result.stdout)
    return name, path


def test_export_is_a_self_describing_document_on_stdout_with_messages_on_stderr(alpha_env, exported) -> None:
    profile, project = alpha_env
    name, path = exported
    document = json.loads(path.read_bytes())
    assert document["format"] == "piper-user-export" and document["format_version"] == 1
    assert document["source"] == {"environment": "alpha", "database": "piper_alpha",
                                  "schema_revision": document["source"]["schema_revision"]}
    assert document["payload"]["user"]["username"] == name and "password_hash" not in document["payload"]["user"]
    assert document["payload"]["preferences"] == HOSTILE
    assert len(document["checksum"]["value"]) == 64 and document["exported_at"]
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        events = conn.execute("SELECT checksum, environment FROM user_data_events WHERE username = %s AND event = 'export'",
                              (name,)).fetchall()
    assert events == [(document["checksum"]["value"], "alpha")]


def test_export_selected_keys_and_refuse_an_unknown_key(alpha_env, exported) -> None:
    _, project = alpha_env
    name, _ = exported
    result = _export(project, "alpha", name, "--keys", "nulls,a.b.c")
    assert result.returncode == 0
    assert json.loads(result.stdout)["payload"]["preferences"] == {"nulls": None, "a.b.c": HOSTILE["a.b.c"]}
    missing = _export(project, "alpha", name, "--keys", "nope")
    assert missing.returncode == 2 and missing.stdout == b""
    assert b"has no preference key 'nope'" in missing.stderr


def test_round_trip_alpha_to_tester_and_back_keeps_every_value(alpha_env, tester, exported, tmp_path, capsys, monkeypatch) -> None:
    name, path = exported
    t_profile, t_project = tester
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--env", "tester"]) == 0
    assert "imported" in capsys.readouterr().out
    assert _row(t_profile, t_project, name)[1] == HOSTILE
    again = _export(t_project, "tester", name)
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
    _set_prefs(t_profile, t_project, name, {"local": "only here", "nulls": "was text"})
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--env", "tester"]) == 1
    assert "already exists in tester with other data; pass --merge" in capsys.readouterr().err
    assert _row(t_profile, t_project, name)[1] == {"local": "only here", "nulls": "was text"}
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--merge", "--env", "tester"]) == 0
    assert _row(t_profile, t_project, name)[1] == {**HOSTILE, "local": "only here"}
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--replace", "--env", "tester"]) == 0
    assert _row(t_profile, t_project, name)[1] == HOSTILE


def test_import_asks_and_dry_run_writes_nothing(alpha_env, tester, exported, capsys, monkeypatch) -> None:
    name, path = exported
    t_profile, t_project = tester
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    result = run_cli([sys.executable, "scripts/import_user_data.py", "--username", name, "--data", str(path),
                      "--env", "tester"], t_project, input="")
    assert result.returncode == 1 and "pass --yes" in result.stderr and "action: create user" in result.stderr
    assert import_user_data.main(["--username", name, "--data", str(path), "--dry-run", "--env", "tester"]) == 0
    assert "dry run: nothing was written" in capsys.readouterr().out
    assert _row(t_profile, t_project, name) is None


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
    assert _row(t_profile, t_project, name) is None


def test_the_username_must_match_the_document(alpha_env, tester, exported, capsys, monkeypatch) -> None:
    name, path = exported
    monkeypatch.setenv("PIPER_ROOT", str(tester[1].root))
    assert import_user_data.main(["--username", "fake.someone", "--data", str(path), "--yes", "--env", "tester"]) == 2
    assert f"holds user {name!r}, not 'fake.someone'" in capsys.readouterr().err


def test_delete_exports_first_asks_and_can_be_undone_by_import(alpha_env, exported, capsys) -> None:
    profile, project = alpha_env
    name, _ = exported
    refused = run_cli([sys.executable, "scripts/delete_user.py", "--username", name, "--env", "alpha"], project, input="")
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert _row(profile, project, name) is not None
    assert delete_user.main(["--username", name, "--yes", "--env", "alpha"]) == 0
    out = capsys.readouterr().out
    assert f"deleted {name} from alpha" in out
    assert _row(profile, project, name) is None
    saved = sorted((project.root / "private" / "deleted-users" / "alpha").glob(f"{name}-*.json"))
    assert len(saved) == 1 and stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        leftovers = conn.execute("SELECT count(*) FROM user_data_events WHERE username = %s", (name,)).fetchone()
        deletion = conn.execute("SELECT username, username_sha256 FROM user_data_events WHERE event = 'delete' "
                                "ORDER BY id DESC LIMIT 1").fetchone()
    assert leftovers == (0,) and deletion[0] is None and len(deletion[1]) == 64
    assert import_user_data.main(["--username", name, "--data", str(saved[0]), "--yes", "--env", "alpha"]) == 0
    assert _row(profile, project, name)[1] == HOSTILE
    assert delete_user.main(["--username", "fake.nobody", "--yes", "--env", "alpha"]) == 2
    assert "no user 'fake.nobody' in environment alpha" in capsys.readouterr().err


def test_import_into_production_creates_an_invitation_that_works_once(alpha_env, exported, production_env, capsys, monkeypatch) -> None:
    import io

    name, path = exported
    p_profile, p_project = production_env
    email = f"{name}@example.invalid"
    assert import_user_data.main(["--username", name, "--email", email, "--data", str(path), "--yes",
                                  "--env", "production"]) == 0
    out = capsys.readouterr().out
    row = _row(p_profile, p_project, name, table="users")
    assert row == (email, HOSTILE)
    with connection.connect(credentials.target(p_profile, p_project, "owner")) as conn:
        assert conn.execute("SELECT password_hash FROM users WHERE username = %s", (name,)).fetchone() == (None,)
        hashes = [r[0] for r in conn.execute("SELECT token_hash FROM user_invitations i JOIN users u ON u.id = i.user_id "
                                             "WHERE u.username = %s", (name,))]
    emails = sorted((p_project.root / "outbox").glob(f"invitation-{name}-*.eml"))
    assert len(emails) == 1 and str(emails[0]) in out
    assert stat.S_IMODE(emails[0].stat().st_mode) == 0o600
    text = emails[0].read_text()
    token = text.split("one-time token when it asks:")[1].split()[0]
    assert f"To: {email}" in text and len(hashes) == 1 and token not in hashes[0] and len(hashes[0]) == 64
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{token}\na-long-enough-password\n"))
    assert accept_invitation.main(["--password-stdin", "--env", "production"]) == 0
    with connection.connect(credentials.target(p_profile, p_project, "owner")) as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE username = %s", (name,)).fetchone()[0]
    assert stored.startswith("$argon2id$") and "a-long-enough-password" not in stored
    monkeypatch.setattr(sys, "stdin", io.StringIO("another-long-password\n"))
    assert accept_invitation.main(["--token", token, "--password-stdin", "--env", "production"]) == 1
    assert "already used" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("another-long-password\n"))
    assert accept_invitation.main(["--token", "made-up-token", "--password-stdin", "--env", "production"]) == 1
    assert "not valid" in capsys.readouterr().err


def test_an_expired_invitation_is_refused(alpha_env, exported, production_env, capsys, monkeypatch) -> None:
    import io

    name, path = exported
    p_profile, p_project = production_env
    assert import_user_data.main(["--username", name, "--email", f"{name}.x@example.invalid", "--data", str(path),
                                  "--yes", "--env", "production"]) == 0
    capsys.readouterr()
    token = sorted((p_project.root / "outbox").glob(f"invitation-{name}-*.eml"))[-1].read_text().split(
        "one-time token when it asks:")[1].split()[0]
    with connection.connect(credentials.target(p_profile, p_project, "owner")) as conn:
        conn.execute("UPDATE user_invitations SET expires_at = now() - interval '1 minute'")
        conn.commit()
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-enough-password\n"))
    assert accept_invitation.main(["--token", token, "--password-stdin", "--env", "production"]) == 1
    assert "has expired" in capsys.readouterr().err


def test_ten_megabyte_preferences_round_trip(alpha_env, tester, tmp_path, capsys, monkeypatch) -> None:
    profile, project = alpha_env
    t_profile, t_project = tester
    big = {f"key.{i}": {"text": "ü✓" * 200 + str(i), "list": list(range(20)), "none": None} for i in range(9000)}
    assert len(json.dumps(big)) > 10_000_000
    assert create_test_alpha_user.main(["--username", "fake.big", "--env", "alpha"]) == 0
    _set_prefs(profile, project, "fake.big", big)
    out = tmp_path / "big.json"
    assert export_user_data.main(["--username", "fake.big", "--output", str(out), "--env", "alpha"]) == 0
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    assert import_user_data.main(["--username", "fake.big", "--data", str(out), "--yes", "--env", "tester"]) == 0
    assert _row(t_profile, t_project, "fake.big")[1] == big


def test_context_of_an_imported_user_carries_their_preferences(alpha_env, tester, exported, monkeypatch) -> None:
    name, path = exported
    t_profile, t_project = tester
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    assert import_user_data.main(["--username", name, "--data", str(path), "--yes", "--env", "tester"]) == 0
    context = UserContextService(t_profile, t_project).get_context(name)
    assert context["nested"] == HOSTILE["nested"] and "identity" in context


def test_replacing_from_a_partial_export_keeps_the_keys_it_does_not_carry(alpha_env, tester, monkeypatch, tmp_path) -> None:


    a_profile, a_project = alpha_env
    t_profile, t_project = tester
    assert create_test_alpha_user.main(["--username", "fake.partial", "--env", "alpha"]) == 0
    _set_prefs(a_profile, a_project, "fake.partial", {"a": "from alpha", "b": 2})
    (into := tmp_path / "partial.json").touch()
    exports.export_user(a_profile, a_project, "fake.partial", keys=["a"], into=into)
    document = into.read_bytes()
    monkeypatch.setenv("PIPER_ROOT", str(t_project.root))
    assert create_test_alpha_user.main(["--username", "fake.partial", "--env", "tester"]) == 0
    _set_prefs(t_profile, t_project, "fake.partial", {"a": "old", "b": "kept", "c": "kept too"})
    plan = imports.plan_import(t_profile, t_project, document, "partial.json", "fake.partial", None, "replace")
    imports.apply_import(t_profile, t_project, plan)
    assert _row(t_profile, t_project, "fake.partial")[1] == {"a": "from alpha", "b": "kept", "c": "kept too"}


#: Values that PostgreSQL's JSON text must escape, including psql's field separator (0x1f) and newlines.
SEPARATORS = {"unit\x1fseparator": "a\x1fb", "control \x01\x02": ["\x7f", "\r\n", "\x1f\n\x1f"],
              "emoji 🎉": {"\u2028": "\u2029"}}


def _new_user(name: str) -> str:
    assert create_test_alpha_user.main(["--username", name, "--env", "alpha"]) == 0
    return name


def test_the_psql_export_and_the_driver_export_carry_the_same_bytes(alpha_env, tmp_path) -> None:


    profile, project = alpha_env
    name = _new_user("xfer-same-bytes")
    _set_prefs(profile, project, name, {**HOSTILE, **SEPARATORS})
    for keys in (None, ["unit\x1fseparator", "a.b.c"]):
        into = tmp_path / "fast.json"
        into.touch()
        size, fast_sum = exports.export_user(profile, project, name, keys, into=into)  # local: through psql
        fast = into.read_bytes()
        assert size == len(fast)
        with store.user_data_connection(profile, project, acting_user=name) as conn:
            driver, driver_sum = exports.export_in_transaction(conn, profile, name, keys)
        one, two = documents.parse_export(fast, "psql"), documents.parse_export(driver, "driver")
        assert fast_sum == driver_sum == one.checksum == two.checksum
        assert one.payload_json == two.payload_json and one.schema_revision == two.schema_revision
        expected = {**HOSTILE, **SEPARATORS} if keys is None else {k: SEPARATORS.get(k, HOSTILE.get(k)) for k in keys}
        assert one.preferences == expected
        # Both are recorded alike: who, where, the checksum, and how many bytes left the database.
        with connection.connect(credentials.target(profile, project, "owner")) as conn:
            rows = conn.execute("SELECT actor, environment, checksum, details FROM user_data_events "
                                "WHERE username = %s AND event = 'export' ORDER BY occurred_at DESC, id DESC LIMIT 2",
                                (name,)).fetchall()
        assert [r[2] for r in rows] == [fast_sum, fast_sum] and {r[1] for r in rows} == {"alpha"}
        assert rows[0][0] == rows[1][0] and rows[0][3]["keys"] == rows[1][3]["keys"] == keys
        assert {r[3]["bytes"] for r in rows} == {len(fast)} == {len(driver)}


def test_a_local_export_never_loads_the_driver_and_refusals_still_name_the_fix(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name = _new_user("xfer-no-driver")
    _set_prefs(profile, project, name, HOSTILE)
    out = tmp_path / "out.json"
    probe = ("import sys; from scripts import export_user_data as e; rc = e.main(sys.argv[1:]); "
             "print(rc, 'psycopg' in sys.modules, file=sys.stderr)")
    for extra, code, loaded, message in (
        ([], 0, "False", f"exported {name} from alpha to {out}"),
        (["--keys", "nulls"], 0, "False", f"exported {name} from alpha"),
        (["--keys", "nope"], 2, "True", f"error: user {name!r} has no preference key 'nope'"),
    ):
        result = subprocess.run([sys.executable, "-c", probe, "--username", name, "--env", "alpha", "--output", str(out),
                                 *extra], cwd=Path(__file__).resolve().parents[2], env=cli_env(project),
                                capture_output=True, text=True, check=False)
        assert result.stderr.splitlines()[-1] == f"{code} {loaded}", result.stderr
        assert message in result.stderr
    assert json.loads(out.read_bytes())["payload"]["preferences"] == {"nulls": None}
    unknown = _export(project, "alpha", "fake.nobody.here", "--output", str(tmp_path / "none.json"))
    assert unknown.returncode == 2 and b"no user 'fake.nobody.here' in environment alpha; users: " in unknown.stderr
    assert not (tmp_path / "none.json").exists()
    nowhere = _export(project, "alpha", name, "--output", str(tmp_path / "missing" / "x.json"))
    assert nowhere.returncode == 2 and not (tmp_path / "missing").exists()
    assert nowhere.stderr.decode().splitlines() == [
        f"error: {tmp_path / 'missing'} is not a directory; create it or pass another --output"]
    folder = _export(project, "alpha", name, "--output", str(tmp_path))
    assert folder.returncode == 2 and folder.stderr.decode().splitlines() == [
        f"error: {tmp_path} is a directory; name the file, e.g. --output {tmp_path / (name + '.json')}"]


def test_an_export_into_a_pipe_closed_early_fails_with_one_line(alpha_env) -> None:
    profile, project = alpha_env
    name = _new_user("xfer-closed-pipe")
    _set_prefs(profile, project, name, {"big": "x" * 2_000_000})  # far more than a pipe holds
    process = subprocess.Popen([sys.executable, "scripts/export_user_data.py", "--username", name, "--env", "alpha"],
                               cwd=Path(__file__).resolve().parents[2], env=cli_env(project),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(100).startswith(b"{")
    process.stdout.close()  # like `| head -c 100`
    errors = process.stderr.read().decode()
    assert process.wait() == 1
    assert errors.splitlines() == ["error: standard output was closed before everything was written; "
                                   "redirect it to a file (> FILE) or pass --output FILE"]


def test_an_export_racing_a_delete_waits_for_it_then_finds_no_user_and_records_nothing(alpha_env, tmp_path) -> None:
    import time

    profile, project = alpha_env
    name = _new_user("xfer-race-delete")
    _set_prefs(profile, project, name, HOSTILE)
    out = tmp_path / "out.json"
    with connection.connect(credentials.target(profile, project, "owner")) as deleting:
        deleting.execute("DELETE FROM alpha_users WHERE username = %s", (name,))  # not committed yet
        export = subprocess.Popen([sys.executable, "scripts/export_user_data.py", "--username", name, "--env", "alpha",
                                   "--output", str(out)], cwd=Path(__file__).resolve().parents[2], env=cli_env(project),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert export.poll() is None  # waiting on the row the delete holds
        deleting.commit()
    _, errors = export.communicate(timeout=120)
    assert export.returncode == 2 and f"no user {name!r} in environment alpha" in errors
    assert not out.exists()
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT count(*) FROM user_data_events WHERE username = %s", (name,)).fetchone() == (0,)
