"""services/users/documents.py: personal-data files (deep merge, JSON paths) and export documents (checksums)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.users import documents
from services.users.documents import UserDataError


def test_deep_merge_objects_merge_and_the_incoming_side_wins_elsewhere() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": "keep", "c": {"deep": {"k": 1}}}
    incoming = {"a": {"y": [3], "z": None}, "c": {"deep": {"j": 2}}, "d": 4}
    merged = documents.deep_merge(base, incoming)
    assert merged == {"a": {"x": 1, "y": [3], "z": None}, "b": "keep", "c": {"deep": {"k": 1, "j": 2}}, "d": 4}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": "keep", "c": {"deep": {"k": 1}}}  # inputs untouched
    assert documents.deep_merge({"a": {"x": 1}}, {"a": "text"}) == {"a": "text"}


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


GOOD = {"piper_personal_data": 1, "username": "fake.user", "preferences": {"tone": "plain"}}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({**GOOD, "colour": 1}, "$.colour is not a known field"),
        ({**GOOD, "piper_personal_data": 2}, "$.piper_personal_data must be 1"),
        ({**GOOD, "username": "someone.else"}, "holds the data of user 'someone.else', not 'fake.user'"),
        ({**GOOD, "preferences": []}, "$.preferences must be a JSON object"),
        ({**GOOD, "preferences": {"a": [1, {"b": "x\u0000y"}]}}, "$.preferences.a[1].b holds a NUL character"),
        ({**GOOD, "preferences": {"with space": {"ok": "\u0000"}}}, '$.preferences."with space".ok holds a NUL'),
        ({**GOOD, "display_name": 5}, "$.display_name must be a string"),
        ([1, 2], "$ must be a JSON object"),
        ('{"piper_personal_data": 1, "username": "fake.user", "prefer', "not valid JSON at line 1"),
    ],
)
def test_a_bad_data_file_is_one_error_naming_the_json_path(tmp_path: Path, document: object, message: str) -> None:
    with pytest.raises(UserDataError) as caught:
        documents.load_personal_data(_write(tmp_path, document), "fake.user")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_and_deeply_nested_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserDataError, match="does not exist"):
        documents.load_personal_data(tmp_path / "nope.json", "fake.user")
    deep: object = "leaf"
    for _ in range(documents.MAX_DEPTH + 5):
        deep = {"k": deep}
    with pytest.raises(UserDataError, match="nests deeper than"):
        documents.load_personal_data(_write(tmp_path, {**GOOD, "preferences": deep}), "fake.user")


def test_export_document_verifies_and_detects_tampering_and_truncation() -> None:
    preferences = {"ünïcode": "✓", "nested": [1, [2, None]], "a.b": {"qu\"ote": 1.5}}
    payload = json.dumps({"user": {"username": "fake.user", "email": "fake.user@example.invalid"},
                          "preferences": preferences, "learning_data": None, "keys": None}, ensure_ascii=False)
    document, checksum = documents.build_export(environment="alpha", database="piper_alpha", schema_revision="0002",
                                                payload=[payload.encode()])
    parsed = documents.parse_export(document, "doc.json")
    assert parsed.checksum == checksum == json.loads(document)["checksum"]["value"]
    assert parsed.preferences == preferences and parsed.payload_json == payload.encode()
    assert parsed.source_environment == "alpha" and parsed.schema_revision == "0002"
    tampered = document.replace("✓".encode(), b"x")
    with pytest.raises(UserDataError, match="does not match its checksum"):
        documents.parse_export(tampered, "doc.json")
    with pytest.raises(UserDataError, match="not valid JSON.*cut short"):
        documents.parse_export(document[: len(document) // 2], "doc.json")
    with pytest.raises(UserDataError, match="is not a piper-ops user export"):
        documents.parse_export(json.dumps({"users": []}).encode(), "doc.json")
    with pytest.raises(UserDataError, match="format_version 99"):
        documents.parse_export(document.replace(b'"format_version": 1', b'"format_version": 99'), "doc.json")
    with pytest.raises(UserDataError, match="holds NaN"):
        documents.parse_export(document.replace(b'"nested": [1', b'"nested": [NaN'), "doc.json")
    nul = documents.build_export(environment="alpha", database="d", schema_revision=None,
                                 payload=[payload.replace("✓", "\\u0000").encode()])[0]
    with pytest.raises(UserDataError, match=r"\$\.payload\.preferences\.ünïcode holds a NUL character"):
        documents.parse_export(nul, "doc.json")


def _document(user: dict, preferences: str = '{"tone": "dry"}') -> bytes:
    import json as _json

    payload = ('{"keys": null, "learning_data": null, "preferences": ' + preferences + ', "user": '
               + _json.dumps(user) + "}").encode()
    document, _ = documents.build_export(environment="alpha", database="piper_alpha", schema_revision="0003",
                                         payload=[payload])
    return document


@pytest.mark.parametrize(("user", "preferences", "message"), [
    ({"username": "zquux", "email": "z@example.invalid", "display_name": "x" * 201}, '{}', "display_name must be shorter"),
    ({"username": "zquux", "email": "z@example.invalid", "display_name": "a\u0000b"}, '{}', "NUL character"),
    ({"username": "zquux", "email": "z@example.invalid", "alpha_wave": [1]}, '{}', "alpha_wave must be integer or null"),
    ({"username": "zquux", "email": "z@example.invalid", "alpha_wave": 10**30}, '{}', "alpha_wave must be smaller"),
    ({"username": "zquux", "email": "z@example.invalid", "colour": "red"}, '{}', "must not contain"),
    ({"username": "zquux", "email": "z@example.invalid"}, '{"n": 1e999999}', "too large"),
    ({"username": "zquux", "email": "z@example.invalid"}, '{"s": "\\ud800"}', "lone surrogate"),
])
def test_a_document_with_a_valid_checksum_but_values_the_database_refuses_is_refused(user, preferences, message) -> None:
    with pytest.raises(documents.UserDataError, match=message):
        documents.parse_export(_document(user, preferences), "doc.json")


def test_a_key_given_twice_is_refused_in_data_files_and_exports(tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text('{"piper_personal_data": 1, "username": "zquux", "preferences": {}, "preferences": {"a": 1}}')
    with pytest.raises(documents.UserDataError, match="gives the key preferences twice"):
        documents.load_personal_data(data, "zquux")
    twice = _document({"username": "zquux", "email": "z@example.invalid"}).replace(
        b',\n "checksum"', b',\n "payload": {"user": {}, "preferences": {}},\n "checksum"')
    with pytest.raises(documents.UserDataError, match="gives the key payload twice"):
        documents.parse_export(twice, "doc.json")


# --- the original product's data file: a bare object of preferences ---------------------------

#: The shape of the original Piper Morgan product's personal data (fake values).
ORIGINAL = {"q4_goals": ["fake goal one", {"due": "2000-12-31", "done": False}], "projects": {"fake-one": {"n": 1.5}},
            "team": ["Fake Tester"]}


def test_a_bare_object_of_preferences_is_read_for_the_user_asked_and_names_no_one(tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL)
    loaded = documents.load_personal_data(path, "fake.user")
    assert loaded.preferences == ORIGINAL and loaded.username == "fake.user" and not loaded.names_user
    assert loaded.display_name is None and loaded.learning_data is None
    assert loaded.sha256 == documents.sha256_hex(path.read_bytes())
    # The envelope is still the format that names its owner; it is unchanged.
    envelope = documents.load_personal_data(_write(tmp_path, GOOD), "fake.user")
    assert envelope.names_user and envelope.username == "fake.user" and envelope.preferences == {"tone": "plain"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"team": ["a", {"b": "x\u0000y"}]}, "$.team[1].b holds a NUL character"),
        ({"ok": 1, "bad\u0000key": 1}, "$ has a key with a NUL character"),
        ('{"team": "\\udfff"}', "$.team holds a lone surrogate"),
        ('{"q4_goals": 1, "team": [], "q4_goals": 2}', "gives the key q4_goals twice"),
        ('{"n": 1e999999}', "too large"),
        ('{"n": NaN}', "NaN"),
        ({}, "is an empty JSON object: no preferences to migrate"),
        ({"username": "fake.user", "preferences": {"tone": "plain"}}, "has $.username but no $.piper_personal_data"),
        ({"preferences": {"tone": "plain"}}, "has $.preferences but no $.piper_personal_data"),
        ({"format": "piper-user-export", "payload": {}}, "is a piper-ops user export, not a personal-data file; import"),
        ('"just text"', "$ must be a JSON object: a personal-data file"),
        ('{"team": ["Fake', "cut short"),
    ],
)
def test_a_bad_bare_object_is_one_error_naming_the_json_path(tmp_path: Path, document: object, message: str) -> None:
    with pytest.raises(UserDataError) as caught:
        documents.load_personal_data(_write(tmp_path, document), "fake.user")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_bare_object_nested_too_deep_is_refused_like_an_envelope(tmp_path: Path) -> None:
    deep: object = "leaf"
    for _ in range(documents.MAX_DEPTH + 1):
        deep = {"k": deep}
    with pytest.raises(UserDataError, match=r"^\S+: \$(\.k)+ nests deeper than 200 levels"):
        documents.load_personal_data(_write(tmp_path, {"k": deep}), "fake.user")
    with pytest.raises(UserDataError, match="nests too deeply to read"):
        documents.load_personal_data(_write(tmp_path, '{"k": ' + "[" * 100_000 + "]" * 100_000 + "}"), "fake.user")


def test_shown_keys_are_sorted_quoted_when_odd_and_cut_short_when_many() -> None:
    assert documents.shown_keys(["team", "q4_goals", "projects"]) == "projects, q4_goals, team"
    assert documents.shown_keys(["a,b", "line\nbreak", " pad", ""]) == '"", " pad", "a,b", "line\\nbreak"'
    assert documents.shown_keys([f"k{i:02}" for i in range(15)], limit=3) == "k00, k01, k02 and 12 more"
    assert documents.shown_keys(["x" * 100]) == "x" * 57 + "..."
