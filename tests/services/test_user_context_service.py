"""UserContextService (ADR-040's `tests/services/test_user_context_service.py`): generic PIPER.md
overridden by one user's preferences, failing closed."""

from __future__ import annotations

import secrets

import pytest

from scripts import create_test_alpha_user
from services import credentials
from services.database import connection
from services.errors import ClusterError
from services.postgres import servers
from services.user_context_service import (
    UserContextError,
    UserContextService,
    parse_sections,
)


def _set(profile, project, username: str, prefs_sql: str) -> None:
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        conn.execute(f"UPDATE alpha_users SET preferences = {prefs_sql} WHERE username = %s", (username,))
        conn.commit()


def _two_users(profile, project) -> tuple[str, str]:
    """Create two users of the test's own (unique names) with preferences that tell them apart."""
    tag = secrets.token_hex(3)
    ann, bob = f"ctx.{tag}.ann", f"ctx.{tag}.bob"
    for name in (ann, bob):
        assert create_test_alpha_user.main(["--username", name, "--env", profile.name]) == 0
    _set(profile, project, ann, """'{"personality": {"tone": "ann-tone"}, "name": "Ann Fakeperson"}'""")
    _set(profile, project, bob, """'{"identity": {"text": "bob-identity"}, "name": "Bob Fakeperson"}'""")
    return ann, bob


@pytest.fixture
def two_users(alpha_env) -> tuple[str, str]:
    return _two_users(*alpha_env)


def test_sections_of_piper_md_are_parsed_by_heading() -> None:
    sections = parse_sections("# Title\n\nintro\n\n## Identity\nwho\n\n## Fallback behaviour\n- one\n```\n## not a heading\n```\n")
    assert list(sections) == ["identity", "fallback_behaviour"]
    assert sections["identity"] == {"title": "Identity", "text": "who"}
    assert "## not a heading" in sections["fallback_behaviour"]["text"]


def test_user_preferences_override_the_generic_config_and_keep_the_rest(alpha_env, two_users) -> None:
    profile, project = alpha_env
    ann_name, bob_name = two_users
    service = UserContextService(profile, project)
    generic = service.generic_config()
    assert {"identity", "personality", "capabilities", "integrations", "privacy", "fallback_behaviour"} <= set(generic)
    ann = service.get_context(ann_name)
    assert ann["personality"]["tone"] == "ann-tone"
    assert ann["personality"]["text"] == generic["personality"]["text"]  # merged, not replaced
    assert ann["identity"] == generic["identity"] and ann["name"] == "Ann Fakeperson"
    bob = service.get_context(bob_name)
    assert bob["identity"]["text"] == "bob-identity"  # the user wins


def test_one_users_data_never_reaches_anothers_context_even_through_the_cache(alpha_env, two_users) -> None:
    profile, project = alpha_env
    ann_name, bob_name = two_users
    service = UserContextService(profile, project)
    ann = service.get_context(ann_name)
    ann["name"] = "mutated by a caller"
    ann["personality"]["tone"] = "mutated"
    bob = service.get_context(bob_name)
    assert "Ann" not in repr(bob) and "ann-tone" not in repr(bob) and "mutated" not in repr(bob)
    again = service.get_context(ann_name)
    assert again["name"] == "Ann Fakeperson" and again["personality"]["tone"] == "ann-tone"
    assert "Bob" not in repr(again)


def test_a_write_invalidates_the_users_cached_context(alpha_env, two_users) -> None:
    profile, project = alpha_env
    ann_name, bob_name = two_users
    service = UserContextService(profile, project)
    assert service.get_context(ann_name)["personality"]["tone"] == "ann-tone"
    service.update_preferences(ann_name, {"personality": {"tone": "new-tone"}})
    assert service.get_context(ann_name)["personality"]["tone"] == "new-tone"
    # A change made elsewhere (another process) is seen too: the cache checks the row's version.
    _set(profile, project, ann_name, """preferences || '{"name": "Changed Elsewhere"}'""")
    assert service.get_context(ann_name)["name"] == "Changed Elsewhere"
    assert service.get_context(bob_name)["name"] == "Bob Fakeperson"


def test_failures_raise_and_never_fall_back_to_the_generic_config(fresh_alpha, tmp_path) -> None:
    # It stops the server: an environment of its own.
    profile, project = fresh_alpha
    ann_name, bob_name = _two_users(profile, project)
    service = UserContextService(profile, project)
    with pytest.raises(UserContextError, match="no user 'ctx.fake.nobody'"):
        service.get_context("ctx.fake.nobody")
    _set(profile, project, bob_name, "'[1, 2]'")
    with pytest.raises(UserContextError, match="are not a JSON object"):
        service.get_context(bob_name)
    missing = UserContextService(profile, project, config_path=tmp_path / "absent.md")
    with pytest.raises(UserContextError, match="cannot read"):
        missing.get_context(ann_name)
    server = servers.locate(profile, project)
    service.get_context(ann_name)  # cached now
    servers.stop(server)
    try:
        with pytest.raises(ClusterError, match="cannot connect"):
            service.get_context(ann_name)  # the cache is no excuse to skip the database
    finally:
        servers.start(server, config_file=profile.source)
