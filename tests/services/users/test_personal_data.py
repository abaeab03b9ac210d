"""services/users/personal_data.py: a personal-data file deep-merged into a user's preferences, once, recorded.

On the shared alpha environment: each test adds users of its own, with unique names.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from services.errors import UsageError
from services.profiles import load_profile
from services.users import accounts, documents, personal_data
from tests.support.databases import query, set_preferences


def _user(profile, project) -> str:
    name = f"pd-{secrets.token_hex(3)}"
    accounts.create_user(profile, project, name)
    return name


def _file(path: Path, username: str, preferences: dict, **more: object) -> Path:
    path.write_text(json.dumps({"piper_personal_data": 1, "username": username, "preferences": preferences, **more}))
    return path


def _migrations(profile, project, username: str) -> list[tuple]:
    return query(profile, project, "SELECT source, checksum FROM user_data_events WHERE event = 'migrate' AND "
                                   "username = %s ORDER BY id", (username,))


def test_a_file_is_deep_merged_recorded_and_never_applied_twice(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name = _user(profile, project)
    set_preferences(profile, project, name, {"projects": {"one": {"status": "open"}}, "kept": True})
    data = _file(tmp_path / "data.json", name, {"projects": {"two": {"status": "new"}}, "tone": "dry"},
                 display_name="Fake Person", learning_data={"seen": 1})
    result = personal_data.migrate_personal_data(profile, project, name, data)
    assert result.applied and result.changed and result.already_applied_at is None
    assert result.changes == {"added": ["tone"], "changed": ["projects"], "removed": []}
    assert result.checksum == documents.sha256_hex(data.read_bytes()) and result.source == "data.json"
    assert query(profile, project, "SELECT preferences, display_name, learning_data FROM alpha_users WHERE username = %s",
                 (name,)) == [({"projects": {"one": {"status": "open"}, "two": {"status": "new"}}, "kept": True,
                               "tone": "dry"}, "Fake Person", {"seen": 1})]
    assert _migrations(profile, project, name) == [("data.json", result.checksum)]
    # The same file again (the user may have changed things since): nothing is applied.
    set_preferences(profile, project, name, {"tone": "chosen-later"})
    again = personal_data.migrate_personal_data(profile, project, name, data)
    assert not again.applied and not again.changed and again.already_applied_at is not None
    assert query(profile, project, "SELECT preferences FROM alpha_users WHERE username = %s", (name,)) == [
        ({"tone": "chosen-later"},)]
    assert len(_migrations(profile, project, name)) == 1


def test_a_dry_run_says_what_would_change_and_writes_nothing(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name = _user(profile, project)
    result = personal_data.migrate_personal_data(profile, project, name, _file(tmp_path / "d.json", name, {"tone": "x"}),
                                                 dry_run=True)
    assert not result.applied and result.changes == {"added": ["tone"], "changed": [], "removed": []}
    assert query(profile, project, "SELECT preferences FROM alpha_users WHERE username = %s", (name,)) == [({},)]
    assert _migrations(profile, project, name) == []


def test_without_a_file_the_profile_must_name_one_that_exists(alpha_env, project) -> None:
    profile, alpha_project = alpha_env
    with pytest.raises(UsageError, match="no data file given and environment 'alpha' names none"):
        personal_data.migrate_personal_data(profile, alpha_project, "alfy", None)
    (project.root / "private" / "dev_user_data.json").unlink()
    with pytest.raises(UsageError, match=r"dev_user_data.json \(personal_data.data_file of dev\) does not exist"):
        personal_data.migrate_personal_data(load_profile("dev", project), project, "xian", None)


def test_someone_elses_file_or_user_is_refused_and_nothing_changes(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name = _user(profile, project)
    other = _file(tmp_path / "other.json", "fake.other.person", {"secret": "not theirs"})
    with pytest.raises(documents.UserDataError, match=f"holds the data of user 'fake.other.person', not '{name}'"):
        personal_data.migrate_personal_data(profile, project, name, other)
    with pytest.raises(UsageError, match="no user 'fake.nobody' in environment alpha"):
        personal_data.migrate_personal_data(profile, project, "fake.nobody", _file(tmp_path / "n.json", "fake.nobody", {}))
    assert query(profile, project, "SELECT preferences FROM alpha_users WHERE username = %s", (name,)) == [({},)]
    assert _migrations(profile, project, name) == []


# --- the original product's bare object of preferences ------------------------------------------


def test_a_bare_object_names_no_user_so_it_needs_confirmation_then_migrates_once(alpha_env, tmp_path) -> None:
    from services.errors import ConfirmationRequired

    profile, project = alpha_env
    name = _user(profile, project)
    set_preferences(profile, project, name, {"team": ["kept"], "kept": True})
    data = tmp_path / "original.json"
    data.write_text(json.dumps({"q4_goals": ["fake goal"], "projects": {"fake-one": {"n": 1}}, "team": ["Fake Tester"]}))
    with pytest.raises(ConfirmationRequired, match=f"original.json is a bare object of preferences and names no user; "
                                                   f"confirm that it is {name}'s"):
        personal_data.migrate_personal_data(profile, project, name, data)
    assert query(profile, project, "SELECT preferences FROM alpha_users WHERE username = %s", (name,)) == [
        ({"team": ["kept"], "kept": True},)]
    assert _migrations(profile, project, name) == []
    # A dry run writes nothing: it needs no confirmation, and says whose the file is not.
    plan = personal_data.migrate_personal_data(profile, project, name, data, dry_run=True)
    assert not plan.applied and not plan.names_user
    assert plan.changes == {"added": ["projects", "q4_goals"], "changed": ["team"], "removed": []}
    # Confirmed (what --yes or the question gives): merged as usual, recorded with the file's checksum.
    loaded = personal_data.load_data_file(profile, project, name, data)
    done = personal_data.migrate_personal_data(profile, project, name, loaded, confirmed=True)
    assert done.applied and not done.names_user and done.checksum == documents.sha256_hex(data.read_bytes())
    assert query(profile, project, "SELECT preferences FROM alpha_users WHERE username = %s", (name,)) == [
        ({"q4_goals": ["fake goal"], "projects": {"fake-one": {"n": 1}}, "team": ["Fake Tester"], "kept": True},)]
    assert query(profile, project, "SELECT source, checksum, details->'names_user' FROM user_data_events "
                                   "WHERE event = 'migrate' AND username = %s", (name,)) == [
        ("original.json", done.checksum, False)]
    # Idempotent by checksum: the same file again changes nothing, confirmed or not.
    again = personal_data.migrate_personal_data(profile, project, name, data)
    assert not again.applied and again.already_applied_at is not None
    assert len(_migrations(profile, project, name)) == 1


def test_a_file_read_for_one_user_is_not_migrated_into_another(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name, other = _user(profile, project), _user(profile, project)
    data = tmp_path / "original.json"
    data.write_text(json.dumps({"team": ["Fake Tester"]}))
    loaded = personal_data.load_data_file(profile, project, name, data)
    with pytest.raises(UsageError, match=f"was read for user '{name}', not '{other}'"):
        personal_data.migrate_personal_data(profile, project, other, loaded, confirmed=True)
    assert query(profile, project, "SELECT preferences FROM alpha_users WHERE username = %s", (other,)) == [({},)]
