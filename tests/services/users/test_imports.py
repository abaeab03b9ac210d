"""services/users/imports.py: plan what an import would change, then apply exactly that plan, in one transaction.

Documents come from the shared alpha environment and go into the shared tester one, each test with
users of its own.
"""

from __future__ import annotations

import secrets

import pytest

from services.errors import UsageError
from services.users import accounts, documents, exports, imports
from tests.support.databases import query, set_preferences, user_row


def _exported(alpha, tmp_path, name: str, preferences: dict, keys: list[str] | None = None) -> bytes:
    profile, project = alpha
    accounts.create_user(profile, project, name)
    set_preferences(profile, project, name, preferences)
    (into := tmp_path / f"{name}.json").touch()
    exports.export_user(profile, project, name, keys=keys, into=into)
    return into.read_bytes()


def test_replacing_from_a_partial_export_keeps_the_keys_it_does_not_carry(alpha_env, tester, tmp_path) -> None:
    t_profile, t_project = tester
    document = _exported(alpha_env, tmp_path, "fake.partial", {"a": "from alpha", "b": 2}, keys=["a"])
    accounts.create_user(t_profile, t_project, "fake.partial")
    set_preferences(t_profile, t_project, "fake.partial", {"a": "old", "b": "kept", "c": "kept too"})
    plan = imports.plan_import(t_profile, t_project, document, "partial.json", "fake.partial", None, "replace")
    imports.apply_import(t_profile, t_project, plan)
    assert user_row(t_profile, t_project, "fake.partial")[1] == {"a": "from alpha", "b": "kept", "c": "kept too"}


def test_a_plan_says_what_it_will_do_and_applying_it_does_exactly_that(alpha_env, tester, tmp_path) -> None:
    t_profile, t_project = tester
    name = f"imp-plan-{secrets.token_hex(3)}"
    document = _exported(alpha_env, tmp_path, name, {"tone": "plain", "nested": {"a": 1}})
    create = imports.plan_import(t_profile, t_project, document, "doc.json", name, None)
    assert (create.action, create.table, create.email) == ("create", "alpha_users", f"{name}@example.invalid")
    assert create.changes == {"added": ["nested", "tone"], "changed": [], "removed": []}
    assert user_row(t_profile, t_project, name) is None  # a plan writes nothing
    created = imports.apply_import(t_profile, t_project, create)
    assert created.action == "create" and created.invitation_file is None
    assert user_row(t_profile, t_project, name)[1] == {"tone": "plain", "nested": {"a": 1}}
    unchanged = imports.plan_import(t_profile, t_project, document, "doc.json", name, None)
    assert unchanged.action == "unchanged"
    assert imports.apply_import(t_profile, t_project, unchanged).user_id == created.user_id
    # The user changes locally: the same document is now a conflict unless merged or replaced.
    set_preferences(t_profile, t_project, name, {"nested": {"b": 2}, "local": True})
    conflict = imports.plan_import(t_profile, t_project, document, "doc.json", name, None)
    assert conflict.action == "conflict"
    with pytest.raises(imports.ImportConflict, match=f"user '{name}' already exists in tester with other data; pass --merge"):
        imports.apply_import(t_profile, t_project, conflict)
    merge = imports.plan_import(t_profile, t_project, document, "doc.json", name, None, "merge")
    assert merge.changes == {"added": ["tone"], "changed": ["nested"], "removed": []}
    imports.apply_import(t_profile, t_project, merge)
    assert user_row(t_profile, t_project, name)[1] == {"tone": "plain", "nested": {"a": 1, "b": 2}, "local": True}
    assert [r[0] for r in query(t_profile, t_project, "SELECT details->>'action' FROM user_data_events WHERE "
                                "username = %s AND event = 'import' ORDER BY id", (name,))] == ["create", "merge"]


def test_a_plan_made_before_the_user_changed_is_refused(alpha_env, tester, tmp_path) -> None:
    t_profile, t_project = tester
    name = f"imp-stale-{secrets.token_hex(3)}"
    document = _exported(alpha_env, tmp_path, name, {"tone": "from alpha"})
    accounts.create_user(t_profile, t_project, name)
    plan = imports.plan_import(t_profile, t_project, document, "doc.json", name, None, "replace")
    set_preferences(t_profile, t_project, name, {"tone": "changed meanwhile"})
    with pytest.raises(imports.ImportConflict, match=f"user '{name}' changed in tester while the import was prepared"):
        imports.apply_import(t_profile, t_project, plan)
    assert user_row(t_profile, t_project, name)[1] == {"tone": "changed meanwhile"}


def test_the_document_must_be_the_users_and_the_email_free(alpha_env, tester, tmp_path) -> None:
    t_profile, t_project = tester
    name = f"imp-email-{secrets.token_hex(3)}"
    document = _exported(alpha_env, tmp_path, name, {})
    with pytest.raises(documents.UserDataError, match=f"doc.json holds user '{name}', not 'fake.other'; pass --username {name}"):
        imports.plan_import(t_profile, t_project, document, "doc.json", "fake.other", None)
    with pytest.raises(UsageError, match="email 'tester123@example.invalid' already belongs to user 'tester123' in tester"):
        imports.plan_import(t_profile, t_project, document, "doc.json", name, "tester123@example.invalid")
    with pytest.raises(UsageError, match="email 'nope' is not a valid address"):
        imports.plan_import(t_profile, t_project, document, "doc.json", name, "nope")
    assert user_row(t_profile, t_project, name) is None
