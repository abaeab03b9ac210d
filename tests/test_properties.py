"""Property-based tests (hypothesis): the laws the user-data, naming, profile and audit code promise.

- services/users/documents.py: deep_merge's laws; build_export/parse_export round trips of arbitrary
  JSON preferences, and any changed byte of a payload refused;
- services/identifiers.py: what is_username and is_email can ever accept, and the validate_*
  functions agreeing with them;
- services/profiles.py: whatever a profile holds, load_profile returns a profile that keeps the
  rules or raises ProfileError, never another exception;
- services/audit/rules.py: redact keeps the first character and nothing else of the text;
- and one round trip through real databases: export from alpha, import into tester.

Examples are kept few (`max_examples`) so the file runs in seconds; `deadline=None` because a
database example takes longer than hypothesis' default. No example database is kept
(`database=None`) and hypothesis' own cache lives in the run's private directory: nothing is
written into the checkout.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import string
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, configuration, example, given, settings
from hypothesis import strategies as st

from services import identifiers
from services.audit import rules
from services.errors import ProfileError, UsageError
from services.profiles import Profile, load_profile
from services.project import Project
from services.users import accounts, documents, exports, imports
from services.users.documents import UserDataError
from tests.support import temp_root
from tests.support.databases import set_preferences, user_row
from tests.support.fakes import HOSTILE


def _settings(examples: int, **extra: Any) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, **extra)


# Hypothesis caches the constants of the code under test in .hypothesis/ of the current directory,
# and its pytest plugin does so while collecting, before any fixture runs: a test run keeps it in
# its private directory instead (tests/support/temp_root.py), removed with everything else.
configuration.set_hypothesis_home_dir(temp_root.path("hypothesis"))


# --- strategies -----------------------------------------------------------------------------

#: Text PostgreSQL can store: no NUL, no lone surrogate.
STORABLE_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | STORABLE_TEXT
#: Arbitrary JSON values PostgreSQL's jsonb can store.
JSON = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(STORABLE_TEXT, children, max_size=4), max_leaves=25)
PREFERENCES = st.dictionaries(STORABLE_TEXT, JSON, max_size=6)


def _dict_trees(keys: str, leaf_keys: str) -> st.SearchStrategy[dict[str, Any]]:
    """Trees of dicts whose scalar leaves sit under their own key names: a key is a dict everywhere or nowhere."""
    leaves = st.dictionaries(st.sampled_from(leaf_keys), st.integers(0, 3) | st.text("xy", max_size=2), max_size=2)
    return st.recursive(leaves, lambda children: st.builds(
        lambda inner, flat: {**flat, **inner},
        st.dictionaries(st.sampled_from(keys), children, max_size=3), leaves), max_leaves=12)


DICT_TREES = _dict_trees("abc", "xyz")
ANY_TREE = st.recursive(SCALARS, lambda children: st.dictionaries(st.sampled_from("abcd"), children, max_size=3)
                        | st.lists(children, max_size=2), max_leaves=15)


# --- deep_merge ----------------------------------------------------------------------------


@_settings(150)
@given(ANY_TREE)
def test_deep_merge_with_an_empty_object_changes_nothing(tree: Any) -> None:
    assert documents.deep_merge({}, tree) == tree
    # Merging {} into an object keeps it; into anything else, {} is the incoming value and wins.
    assert documents.deep_merge(tree, {}) == (tree if isinstance(tree, dict) else {})


@_settings(150)
@given(ANY_TREE, ANY_TREE)
def test_deep_merge_incoming_wins_wherever_one_side_is_no_object(base: Any, incoming: Any) -> None:
    merged = documents.deep_merge(base, incoming)
    if not isinstance(base, dict) or not isinstance(incoming, dict):
        assert merged == incoming
        return
    assert set(merged) == set(base) | set(incoming)
    for key, value in incoming.items():
        if not isinstance(value, dict) or not isinstance(base.get(key), dict):
            assert merged[key] == value  # scalars, lists and null: the incoming value, never a mix
        else:
            assert merged[key] == documents.deep_merge(base[key], value)
    for key in set(base) - set(incoming):
        assert merged[key] == base[key]


@_settings(150)
@given(DICT_TREES, DICT_TREES, DICT_TREES)
def test_deep_merge_is_associative_for_dict_only_trees(a: dict, b: dict, c: dict) -> None:
    merge = documents.deep_merge
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@_settings(150)
@given(ANY_TREE, ANY_TREE)
def test_deep_merge_leaves_both_inputs_unchanged_and_is_idempotent(base: Any, incoming: Any) -> None:
    saved = copy.deepcopy((base, incoming))
    documents.deep_merge(base, incoming)
    assert (base, incoming) == saved
    assert documents.deep_merge(base, base) == base


# --- export documents ----------------------------------------------------------------------


def _payload(preferences: Any, username: str = "zquux", learning_data: Any = None) -> bytes:
    """A payload's JSON text in export's key order, as PostgreSQL would write it (UTF-8, not ASCII)."""
    user = {"username": username, "email": f"{username}@example.invalid", "display_name": "Fake Person",
            "is_active": True, "is_verified": False, "alpha_wave": None, "created_at": None, "notes": None}
    payload = {"keys": None, "learning_data": learning_data, "preferences": preferences, "user": user}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _parts(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[i:j] for i, j in itertools.pairwise(bounds)]


@_settings(100)
@given(PREFERENCES, st.none() | st.dictionaries(STORABLE_TEXT, JSON, max_size=3), st.lists(st.integers(0, 10**6), max_size=4))
def test_an_export_of_any_preferences_parses_back_to_the_same_data(preferences: dict, learning: Any, cuts: list[int]) -> None:
    payload = _payload(preferences, learning_data=learning)
    document, checksum = documents.build_export(environment="alpha", database="piper_alpha", schema_revision="0002",
                                                payload=_parts(payload, cuts))
    assert checksum == hashlib.sha256(payload).hexdigest()  # the payload's bytes as they stand, however it was cut
    parsed = documents.parse_export(document, "doc.json")
    assert parsed.preferences == preferences and parsed.learning_data == learning
    assert parsed.user["username"] == "zquux" and parsed.checksum == checksum and parsed.payload_json == payload
    assert (parsed.source_environment, parsed.source_database, parsed.schema_revision) == ("alpha", "piper_alpha", "0002")


@_settings(100)
@given(PREFERENCES.filter(bool), st.integers(0, 10**6), st.integers(1, 255))
def test_any_changed_byte_of_a_payload_is_refused(preferences: dict, where: int, delta: int) -> None:
    payload = bytearray(_payload(preferences))
    document, _ = documents.build_export(environment="alpha", database="piper_alpha", schema_revision=None,
                                         payload=[bytes(payload)])
    start = document.index(bytes(payload))
    changed = bytearray(document)
    changed[start + where % len(payload)] = (changed[start + where % len(payload)] + delta) % 256
    with pytest.raises(UserDataError):
        documents.parse_export(bytes(changed), "doc.json")


@_settings(60)
@given(PREFERENCES, st.sampled_from(["\x00", "a\x00b"]), st.booleans())
def test_a_nul_anywhere_in_the_preferences_is_refused_by_name(preferences: dict, bad: str, as_key: bool) -> None:
    preferences = {**preferences, **({bad: 1} if as_key else {"bad": [1, {"deep": bad}]})}
    document, _ = documents.build_export(environment="alpha", database="piper_alpha", schema_revision=None,
                                         payload=[_payload(preferences)])
    with pytest.raises(UserDataError, match="NUL"):
        documents.parse_export(document, "doc.json")


# --- usernames and emails ------------------------------------------------------------------

USERNAME_CHARS = set(string.ascii_lowercase + string.digits + "_.-")
NEAR_USERNAMES = st.text(st.sampled_from(sorted(USERNAME_CHARS)), min_size=1, max_size=70)
HOSTILE_CHARS = st.sampled_from(["\n", "\r", "\t", " ", "\x00", "\u200b", "\u2028", "\uff41", "\u0430", "A", "/", "@", "é"])


@_settings(300)
@given(st.text(max_size=70) | NEAR_USERNAMES)
def test_a_username_is_only_ever_lower_case_ascii_of_2_to_63_characters(text: str) -> None:
    if identifiers.is_username(text):
        assert set(text) <= USERNAME_CHARS and "\n" not in text
        assert 2 <= len(text) <= 63 and text[0] not in "_.-"
        assert identifiers.validate_username(text) == text
    else:
        with pytest.raises(UsageError, match="is not valid"):
            identifiers.validate_username(text)


@_settings(200)
@given(NEAR_USERNAMES, st.integers(0, 70), HOSTILE_CHARS)
def test_a_username_with_any_foreign_character_is_refused(text: str, where: int, bad: str) -> None:
    where %= len(text) + 1
    assert not identifiers.is_username(text[:where] + bad + text[where:])


LOCAL_CHARS = string.ascii_letters + string.digits + ".!#$%&'*+/=?^_`{|}~-"
NEAR_EMAILS = st.builds(lambda local, labels: f"{local}@{'.'.join(labels)}",
                        st.text(st.sampled_from(LOCAL_CHARS), min_size=1, max_size=70),
                        st.lists(st.text(st.sampled_from(string.ascii_lowercase + string.digits + "-"), min_size=1, max_size=70),
                                 min_size=1, max_size=5))


@_settings(300)
@given(st.text(max_size=40) | NEAR_EMAILS | st.emails())
def test_validate_email_agrees_with_is_email(text: str) -> None:
    if identifiers.is_email(text):
        assert identifiers.validate_email(text) == text
        assert len(text) <= 254 and text.count("@") == 1 and text.isascii()
        assert not any(ch.isspace() for ch in text)
    else:
        with pytest.raises(UsageError, match="is not a valid address"):
            identifiers.validate_email(text)


#: Never in an address: spacing, controls, invisible and look-alike characters, a second @.
EMAIL_HOSTILE_CHARS = st.sampled_from(["\n", "\r", "\t", " ", "\x00", "\u200b", "\u2028", "\uff41", "\u0430", "\uff20",
                                       "@", "é", "(", ","])


@_settings(200)
@given(NEAR_EMAILS.filter(identifiers.is_email), st.integers(0, 300), EMAIL_HOSTILE_CHARS)
def test_an_email_with_a_space_a_control_or_a_foreign_letter_is_refused(email: str, where: int, bad: str) -> None:
    where %= len(email) + 1
    assert not identifiers.is_email(email[:where] + bad + email[where:])


# --- profiles ------------------------------------------------------------------------------

BASE_PROFILE = {
    "name": "x", "branch": "main", "description": "fake",
    "default_user": {"username": "zquux", "email": "fake.person@example.invalid", "display_name": "Fake Person"},
    "database": {"name": "piper_x", "port": 54398, "data_dir": "postgres_data/x"},
    "setup_steps": [{"script": "create_test_alpha_user", "args": ["--username", "{username}"]}],
    "backups": {"keep_last": 3, "keep_daily": 2, "keep_weekly": 1},
    "audit": {"terms": [{"term": "zquux", "kind": "username"}]},
}
KNOWN_KEYS = ["name", "branch", "description", "branch_policy", "protected", "default_user", "database", "setup_steps",
              "personal_data", "backups", "audit", "default_user.username", "default_user.email", "database.name",
              "database.server", "database.port", "database.data_dir", "database.bin_dir", "database.listen_addresses",
              "database.url_env", "database.sslmode", "backups.keep_last", "audit.terms", "personal_data.data_file"]
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
    | st.sampled_from(["hosted", "system", "embedded", "refuse", "postgres_data/x", "../x", "/etc", "127.0.0.1", "{nope}"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8)
EDITS = st.lists(st.tuples(st.sampled_from(KNOWN_KEYS) | st.text(max_size=10), st.booleans(), YAML_VALUES), max_size=4)


@pytest.fixture(scope="module")
def profile_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A database-free project whose only profile, environments/x.yaml, each example rewrites."""
    root = tmp_path_factory.mktemp("profiles")
    (root / "environments").mkdir()
    return Project(root)


def _edited(edits: list[tuple[str, bool, Any]]) -> dict:
    profile = copy.deepcopy(BASE_PROFILE)
    for key, delete, value in edits:
        *parents, last = key.split(".")
        node: Any = profile
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            if delete:
                node.pop(last, None)
            else:
                node[last] = value
    return profile


def _load(project: Project, data: bytes) -> Any:
    (project.environments_dir / "x.yaml").write_bytes(data)
    try:
        return load_profile("x", project)
    except ProfileError as exc:
        assert "x.yaml" in str(exc)  # one error, naming the file
        return None


@_settings(200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(EDITS)
def test_a_profile_loads_keeping_the_rules_or_is_one_profile_error(profile_project: Project,
                                                                   edits: list[tuple[str, bool, Any]]) -> None:
    profile = _load(profile_project, yaml.safe_dump(_edited(edits), allow_unicode=True).encode("utf-8"))
    if profile is None:
        return
    assert profile.name == "x"
    assert identifiers.is_username(profile.default_user.username) and identifiers.is_email(profile.default_user.email)
    if not profile.hosted:
        assert 1024 <= profile.database.port <= 65535
        assert Path(profile.database.data_dir).parts[0] == "postgres_data" and ".." not in Path(profile.database.data_dir).parts
    else:
        assert profile.protected and profile.database.url_env
    assert profile.backups.keep_last >= 1


@_settings(150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")), st.booleans())
def test_any_text_as_a_profile_is_a_profile_or_one_profile_error(profile_project: Project, text: str, latin: bool) -> None:
    _load(profile_project, text.encode("latin-1" if latin and all(ord(c) < 256 for c in text) else "utf-8", "surrogatepass"))


# --- the audit's redaction -----------------------------------------------------------------


@_settings(300)
@given(st.text(max_size=60))
def test_redact_keeps_the_first_character_and_one_star_per_other(text: str) -> None:
    normal = " ".join(text.split())
    shown = rules.redact(text)
    assert len(shown) == len(normal)
    assert shown[:1] == normal[:1] and set(shown[1:]) <= {"*"}
    for ch in set(normal[1:]) - {"*"}:
        assert ch not in shown[1:]  # nothing of the text beyond its first character
    assert rules.redact("  \n" + text.replace(" ", " \t ") + "\n") == shown  # spacing does not change it


@_settings(150)
@given(st.text(max_size=40).filter(lambda t: any(ch.isalnum() for ch in t)), st.booleans())
def test_a_finding_digest_ignores_spacing_and_never_holds_the_text(text: str, case_sensitive: bool) -> None:
    rule = rules.Rule("name-0", "name", "a fake rule", "zquux", case_sensitive)
    digest = rules.match_digest(rule, text)
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    assert rules.match_digest(rule, "\n " + "  ".join(text.split()) + " ") == digest


# --- one round trip through real databases: export from alpha, import into tester ----------

_serial = itertools.count()


def _numbers_as_decimals(value: Any) -> Any:
    """JSON's view of a value: PostgreSQL writes 1e20 as 100000000000000000000, the same JSON number."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, list):
        return [_numbers_as_decimals(v) for v in value]
    return {k: _numbers_as_decimals(v) for k, v in value.items()}


@_settings(10, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(PREFERENCES)
@example(HOSTILE)
def test_export_then_import_into_a_fresh_user_keeps_any_preferences(
        alpha: tuple[Profile, Project], tester: tuple[Profile, Project], tmp_path_factory: pytest.TempPathFactory,
        preferences: dict[str, Any]) -> None:
    a_profile, a_project = alpha
    t_profile, t_project = tester
    username = f"zq-prop-{next(_serial)}-{hashlib.sha256(repr(preferences).encode()).hexdigest()[:8]}"
    accounts.create_user(a_profile, a_project, username)
    set_preferences(a_profile, a_project, username, preferences)
    into = tmp_path_factory.mktemp("export") / f"{username}.json"
    into.touch()
    exports.export_user(a_profile, a_project, username, into=into)
    raw = into.read_bytes()
    assert _numbers_as_decimals(documents.parse_export(raw, str(into)).preferences) == _numbers_as_decimals(preferences)
    plan = imports.plan_import(t_profile, t_project, raw, str(into), username, None)
    assert plan.action == "create"
    imports.apply_import(t_profile, t_project, plan)
    row = user_row(t_profile, t_project, username)
    assert row is not None and row[0] == f"{username}@example.invalid"
    assert _numbers_as_decimals(row[1]) == _numbers_as_decimals(preferences)
