"""services/users/exports.py: one user's data as a checksummed document, through psql (local) or the driver
(hosted, or inside a larger transaction); both write the same bytes and the same records."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from services import credentials
from services.database import connection
from services.errors import UsageError
from services.users import accounts, documents, exports, store
from services.users.store import UserNotFound
from tests.support.databases import query, set_preferences
from tests.support.fakes import HOSTILE

#: Values that PostgreSQL's JSON text must escape, including psql's field separator (0x1f) and newlines.
SEPARATORS = {"unit\x1fseparator": "a\x1fb", "control \x01\x02": ["\x7f", "\r\n", "\x1f\n\x1f"],
              "emoji 🎉": {"\u2028": "\u2029"}}


def _new_user(profile, project, name: str) -> str:
    accounts.create_user(profile, project, name)
    return name


def test_the_psql_export_and_the_driver_export_carry_the_same_bytes(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name = _new_user(profile, project, "xfer-same-bytes")
    set_preferences(profile, project, name, {**HOSTILE, **SEPARATORS})
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


def test_an_unknown_user_or_key_is_refused_writes_nothing_and_records_nothing(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name = _new_user(profile, project, f"xfer-refused-{secrets.token_hex(3)}")
    set_preferences(profile, project, name, {"tone": "plain", "projects": []})
    into = tmp_path / "out.json"
    into.touch()
    with pytest.raises(UserNotFound, match="no user 'fake.nobody.here' in environment alpha; users: "):
        exports.export_user(profile, project, "fake.nobody.here", into=into)
    with pytest.raises(UsageError, match=f"user '{name}' has no preference key 'nope'; keys: projects, tone"):
        exports.export_user(profile, project, name, ["tone", "nope"], into=into)
    assert into.read_bytes() == b""
    assert query(profile, project, "SELECT count(*) FROM user_data_events WHERE username = %s", (name,)) == [(0,)]


def test_a_hosted_export_goes_through_the_driver_over_tls(production_env, tmp_path) -> None:
    profile, project = production_env
    name = f"xfer-hosted-{secrets.token_hex(3)}"
    accounts.create_user(profile, project, name, f"{name}@example.invalid")
    set_preferences(profile, project, name, HOSTILE, table="users")
    into = tmp_path / "hosted.json"
    into.touch()
    size, checksum = exports.export_user(profile, project, name, into=into)
    document = documents.parse_export(into.read_bytes(), "hosted")
    assert size == into.stat().st_size and document.checksum == checksum
    assert (document.source_environment, document.preferences, document.learning_data) == ("production", HOSTILE, None)
    assert set(document.user) == set(store.EXPORTED_FIELDS["users"])  # never the password hash
    assert query(profile, project, "SELECT environment, checksum FROM user_data_events WHERE username = %s AND "
                                   "event = 'export'", (name,)) == [("production", checksum)]


def test_what_git_would_track_and_the_file_standard_output_is(tmp_path) -> None:
    import os
    import subprocess

    from services.project import Project

    project = Project(tmp_path / "checkout")
    project.root.mkdir()
    assert exports.trackable_destination(project, project.root / "a.json") is None  # no git: nothing to commit it
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    (project.root / ".gitignore").write_text("exports/\nprivate/\n")
    assert exports.trackable_destination(project, project.root / "a.json") == Path("a.json")
    assert exports.trackable_destination(project, project.root / "deep" / "b.json") == Path("deep/b.json")
    for ignored in ("exports/a.json", "private/x/a.json", ".git/a.json"):
        assert exports.trackable_destination(project, project.root / ignored) is None, ignored
    assert exports.trackable_destination(project, tmp_path / "outside.json") is None
    assert exports.trackable_destination(project, None) is None
    (project.root / "link").symlink_to(tmp_path)  # a path through a link counts where it leads
    assert exports.trackable_destination(project, project.root / "link" / "outside.json") is None
    assert exports.is_in_export_folder(project, project.root / "exports" / "u.json")
    assert not exports.is_in_export_folder(project, project.root / "exports" / "sub" / "u.json")
    assert exports.export_folder(project) == project.root / "exports"
    assert (project.root / "exports").stat().st_mode & 0o777 == 0o700
    # The file open on a descriptor: a regular file is found; a pipe or a device is none.
    with open(project.root / "out.json", "wb") as handle:
        assert exports.open_file_path(handle.fileno()) == project.root / "out.json"
    read, write = os.pipe()
    try:
        assert exports.open_file_path(write) is None
    finally:
        os.close(read)
        os.close(write)
    with open(os.devnull, "wb") as null:
        assert exports.open_file_path(null.fileno()) is None
    assert exports.open_file_path(9999) is None  # no such descriptor


def test_an_export_folder_that_links_elsewhere_is_used_as_it_is(tmp_path) -> None:
    from services.errors import UsageError
    from services.project import Project

    project = Project(tmp_path / "checkout")
    project.root.mkdir()
    own = tmp_path / "my-exports"
    own.mkdir(mode=0o750)
    own.chmod(0o750)
    (project.root / "exports").symlink_to(own)
    assert exports.export_folder(project) == project.root / "exports"
    assert own.stat().st_mode & 0o777 == 0o750  # a directory outside the project keeps its mode
    (project.root / "exports").unlink()
    (project.root / "exports").write_text("a file")
    with pytest.raises(UsageError, match="exports is not a directory, so it cannot be the export folder"):
        exports.export_folder(project)
