"""services/users/accounts.py: create (idempotent, one email per user), find and delete users, on real servers.

On the shared alpha environment: each test adds users of its own, with unique names.
"""

from __future__ import annotations

import secrets
import stat
import threading

import pytest

from services.errors import ConfirmationRequired, UsageError
from services.users import accounts, documents
from services.users.store import UserNotFound
from tests.support.databases import query, set_preferences
from tests.support.fakes import HOSTILE


def _name(what: str) -> str:
    return f"acct-{what}-{secrets.token_hex(3)}"


def test_create_user_is_idempotent_and_one_email_belongs_to_one_user(alpha_env) -> None:
    profile, project = alpha_env
    name = _name("idem")
    email = f"{name}@example.invalid"
    first = accounts.create_user(profile, project, name, email, display_name="Fake Person")
    assert (first.username, first.email, first.created) == (name, email, True)
    again = accounts.create_user(profile, project, name, email)
    assert (again.id, again.created) == (first.id, False)
    assert accounts.create_user(profile, project, name).id == first.id  # no email asked for: the existing one
    with pytest.raises(UsageError, match=f"user '{name}' already exists in alpha with another email; choose another"):
        accounts.create_user(profile, project, name, f"other-{name}@example.invalid")
    other = _name("other")
    with pytest.raises(UsageError, match=f"email '{email}' already belongs to another user in alpha; use another email"):
        accounts.create_user(profile, project, other, email)
    assert query(profile, project, "SELECT username, email, display_name FROM alpha_users WHERE username = ANY(%s)",
                 ([name, other],)) == [(name, email, "Fake Person")]


def test_create_user_checks_its_input_and_defaults_the_email(alpha_env) -> None:
    profile, project = alpha_env
    with pytest.raises(UsageError, match="username 'Not Valid' is not valid"):
        accounts.create_user(profile, project, "Not Valid")
    with pytest.raises(UsageError, match="username 'trailing-newline\\\\n' is not valid"):
        accounts.create_user(profile, project, "trailing-newline\n")
    with pytest.raises(UsageError, match="email 'not-an-email' is not a valid address"):
        accounts.create_user(profile, project, _name("bad-email"), "not-an-email")
    name = _name("default")
    assert accounts.create_user(profile, project, name).email == f"{name}@example.invalid"


@pytest.mark.slow
def test_concurrent_creates_of_one_user_both_succeed_and_one_creates_it(alpha_env) -> None:
    profile, project = alpha_env

    def create(name: str, start: threading.Barrier, results: list, errors: list) -> None:
        start.wait()
        try:
            results.append(accounts.create_user(profile, project, name))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            errors.append(exc)

    for _ in range(20):  # the race is narrow: one round alone lost it about a third of the time
        name, start = _name("race"), threading.Barrier(4)
        results: list[accounts.UserResult] = []
        errors: list[Exception] = []
        threads = [threading.Thread(target=create, args=(name, start, results, errors)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert len(results) == 4 and len({r.id for r in results}) == 1
        assert sum(r.created for r in results) == 1


def test_find_user_id_names_the_users_that_exist(alpha_env) -> None:
    profile, project = alpha_env
    name = _name("find")
    created = accounts.create_user(profile, project, name)
    assert accounts.find_user_id(profile, project, name) == created.id
    with pytest.raises(UserNotFound, match=f"no user 'fake.nobody' in environment alpha; users: .*{name}"):
        accounts.find_user_id(profile, project, "fake.nobody")


def test_delete_user_needs_a_yes_and_exports_the_user_first(alpha_env) -> None:
    profile, project = alpha_env
    name = _name("delete")
    created = accounts.create_user(profile, project, name)
    set_preferences(profile, project, name, HOSTILE)
    with pytest.raises(ConfirmationRequired, match=f"deleting '{name}' from alpha removes all their data"):
        accounts.delete_user(profile, project, name, confirmed=False)
    assert accounts.find_user_id(profile, project, name) == created.id
    path, checksum = accounts.delete_user(profile, project, name, confirmed=True)
    assert path.parent == project.root / "private" / "deleted-users" / "alpha" and path.name.startswith(f"{name}-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.parent.parent.stat().st_mode) == 0o700
    saved = documents.parse_export(path.read_bytes(), str(path))
    assert (saved.checksum, saved.preferences, saved.user["username"]) == (checksum, HOSTILE, name)
    with pytest.raises(UserNotFound):
        accounts.find_user_id(profile, project, name)
    # The record keeps the user's id and a hash of the name, never the name.
    events = query(profile, project, "SELECT event, username, username_sha256, checksum FROM user_data_events "
                                     "WHERE user_id = %s ORDER BY id", (created.id,))
    digest = documents.sha256_hex(name.encode())
    assert [e[0] for e in events][-2:] == ["export", "delete"]
    assert all(e[1] is None and e[2] == digest for e in events)
    assert events[-1][3] == checksum
    with pytest.raises(UserNotFound):
        accounts.delete_user(profile, project, name, confirmed=True)
