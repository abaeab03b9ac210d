"""services/identifiers.py: one rule each for the names people and profiles choose, matched whole."""

from __future__ import annotations

import pytest

from services import identifiers
from services.errors import UsageError


@pytest.mark.parametrize("name", ["alfy", "tester123", "fake.user", "a_b-c", "9lives", "x" * 63])
def test_good_usernames(name: str) -> None:
    assert identifiers.is_username(name) and identifiers.validate_username(name) == name


@pytest.mark.parametrize("name", ["a", "Alfy", "-dash", ".dot", "has space", "ünï", "x" * 64, "alfy\n", "alfy\r", ""])
def test_bad_usernames_are_refused_naming_the_rule(name: str) -> None:
    assert not identifiers.is_username(name)
    with pytest.raises(UsageError) as caught:
        identifiers.validate_username(name)
    assert str(caught.value) == f"username {name!r} is not valid; use {identifiers.USERNAME_RULE}"


def test_emails_are_matched_whole_and_bounded() -> None:
    for good in ("alfy@example.invalid", "a.b+c@sub.example.invalid", "x_y@e-x.invalid"):
        assert identifiers.validate_email(good) == good
    for bad in ("not-an-email", "a@b", "a@-b.invalid", "a@b.invalid\n", "a b@c.invalid", "@c.invalid",
                "a@" + "b" * 250 + ".invalid"):
        assert not identifiers.is_email(bad), bad
        with pytest.raises(UsageError, match="is not a valid address; use the form name@example.com"):
            identifiers.validate_email(bad)


def test_environment_and_sql_names() -> None:
    assert all(identifiers.is_environment_name(n) for n in ("dev", "alpha", "tester", "production", "qa_2"))
    assert not any(identifiers.is_environment_name(n) for n in ("Dev", "2dev", "de-v", "dev\n", "", "d" * 32))
    assert all(identifiers.is_sql_name(n) for n in ("piper_alpha", "_x", "a1"))
    assert not any(identifiers.is_sql_name(n) for n in ("Piper", "1a", "a-b", 'a"b', "a\n", "a" * 64))
