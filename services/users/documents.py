"""Personal-data documents: the migration data file and the export format, and how they merge.

Nothing here touches a database. Two documents are defined:

* the personal-data file that `migrate_personal_data.py --data-file` reads::

      {"piper_personal_data": 1, "username": "fake.person",
       "preferences": {...}, "display_name": "...", "learning_data": {...}}

  `piper_personal_data`, `username` and `preferences` are required; `display_name` and
  `learning_data` are optional; any other key is an error. The file names its owner, so a run
  for one user can never receive another user's data. This envelope is the format for new files.

  The original Piper Morgan product's data file is accepted too: a bare JSON object of preferences
  (`{"q4_goals": ..., "projects": ..., "team": ...}`), told apart by having no `piper_personal_data`.
  It names no user, so it is read *for* the user asked about, and whoever migrates it must confirm
  that user first (`PersonalDataFile.names_user` is False). It is validated as preferences are.

* the export document that `export_user_data.py` writes and `import_user_data.py` reads::

      {"format": "piper-user-export", "format_version": 1, "exported_at": "...",
       "source": {"environment": "alpha", "database": "piper_alpha", "schema_revision": "0002"},
       "payload": {"user": {...}, "preferences": {...}, "learning_data": ..., "keys": null},
       "checksum": {"algorithm": "sha256", "value": "<hex>"}}

  The checksum is the SHA-256 of the payload exactly as its bytes stand in the file. The payload is
  written by PostgreSQL itself (`jsonb::text`, whose key order and spacing are fixed), so export
  never re-serialises megabytes of preferences in Python; any change to those bytes, including
  reformatting the file, makes the import refuse it.

Merging is a deep merge: where both sides hold an object, keys merge recursively; anywhere else
the incoming value wins (lists are replaced, not concatenated; null is a value, not a deletion).
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.errors import UsageError
from services.files import read_regular_file
from services.users import schemas

FORMAT = "piper-user-export"
FORMAT_VERSION = 1
DATA_FILE_VERSION = 1
#: The most a document may hold: PostgreSQL keeps at most 255 MB in one jsonb value.
MAX_DOCUMENT_BYTES = 512 << 20
#: jsonb nests at most this deep in practice; deeper input is refused with a clear error.
MAX_DEPTH = 200

_DATA_FILE_KEYS = {"piper_personal_data", "username", "preferences", "display_name", "learning_data"}


class UserDataError(UsageError):
    """A personal-data document is malformed, tampered with, or meant for someone else."""


@dataclass(frozen=True)
class PersonalDataFile:
    """A validated personal-data file and the SHA-256 of its bytes."""

    path: Path
    username: str
    preferences: dict[str, Any]
    display_name: str | None
    learning_data: dict[str, Any] | None
    sha256: str
    #: False for a bare object of preferences (the original product's format): the file names no
    #: user, `username` is the user it was read for, and that user must be confirmed before it is migrated.
    names_user: bool = True


@dataclass(frozen=True)
class ExportDocument:
    """A verified export: where it came from and the user it carries."""

    exported_at: str
    source_environment: str
    source_database: str
    schema_revision: str | None
    user: dict[str, Any]
    preferences: dict[str, Any]
    learning_data: Any
    keys: list[str] | None
    checksum: str
    #: The payload's JSON text (UTF-8) as exported, for storing it without serialising it again.
    payload_json: bytes = field(default=b"", repr=False)


def deep_merge(base: Any, incoming: Any) -> Any:
    """Return base with incoming merged in (neither argument is modified); incoming wins."""
    if not isinstance(base, dict) or not isinstance(incoming, dict):
        return incoming
    merged = dict(base)
    for key, value in incoming.items():
        merged[key] = deep_merge(base[key], value) if key in base else value
    return merged


def canonical_json(value: Any) -> bytes:
    """Return value as canonical JSON bytes: sorted keys, no insignificant space, UTF-8."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except ValueError:
        raise UserDataError("the data holds a number that JSON cannot represent (NaN or infinity); fix the data") from None


def sha256_hex(data: bytes) -> str:
    """Return the hexadecimal SHA-256 of data."""
    return hashlib.sha256(data).hexdigest()


def check_storable(value: Any, where: str = "$") -> None:
    """Refuse what PostgreSQL's jsonb cannot store: NUL characters, non-finite numbers, deep nesting.

    The error names the JSON path of the first bad value, e.g. `$.preferences.notes[3]`.
    """
    _walk_storable(value, where)


def _walk_storable(value: Any, where: str) -> None:
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UserDataError(f"{path} nests deeper than {MAX_DEPTH} levels; flatten the data")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise UserDataError(f"{path} has a key with a NUL character, which PostgreSQL cannot store; remove it")
                if not key.isascii() and _has_lone_surrogate(key):
                    raise UserDataError(f"{path} has a key with a lone surrogate (\\ud800-\\udfff), which is no "
                                        "character; fix the data")
                stack.append((child, f"{path}.{_path_key(key)}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            if "\x00" in item:
                raise UserDataError(f"{path} holds a NUL character, which PostgreSQL cannot store; remove it")
            if not item.isascii() and _has_lone_surrogate(item):
                raise UserDataError(f"{path} holds a lone surrogate (\\ud800-\\udfff), which is no character; fix the data")
        elif isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            raise UserDataError(f"{path} is not a finite number; fix the data")


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise UserDataError(f"the number {text[:20]} is too large for JSON's doubles and PostgreSQL's numbers; fix the data")
    return value


def load_personal_data(path: Path, username: str) -> PersonalDataFile:
    """Read and validate a personal-data file meant for username (an envelope, or a bare object of preferences).

    An envelope names its owner and is refused for anyone else; a bare object names nobody and is
    returned with `names_user` False: the caller confirms that it is username's before migrating it.
    """
    raw = _read(path)
    document = _parse_json(raw, path)
    if not isinstance(document, dict):
        raise UserDataError(f"{path}: $ must be a JSON object: a personal-data file (piper_personal_data, username, "
                            "preferences) or a bare object of preferences")
    if "piper_personal_data" not in document:
        return _bare_preferences(path, document, username, raw)
    for key in document:
        if key not in _DATA_FILE_KEYS:
            raise UserDataError(f"{path}: $.{_path_key(key)} is not a known field; known: {', '.join(sorted(_DATA_FILE_KEYS))}")
    version = document.get("piper_personal_data")
    if type(version) is not int or version != DATA_FILE_VERSION:  # true == 1 in Python, not in the format
        raise UserDataError(f"{path}: $.piper_personal_data must be {DATA_FILE_VERSION}, not {version!r}; is this a personal-data file?")
    owner = document.get("username")
    if not isinstance(owner, str):
        raise UserDataError(f"{path}: $.username must be a string naming the user the data belongs to")
    if owner != username:
        raise UserDataError(f"{path} holds the data of user {owner!r}, not {username!r}; pass the file meant for {username!r}")
    preferences = document.get("preferences")
    if not isinstance(preferences, dict):
        raise UserDataError(f"{path}: $.preferences must be a JSON object")
    display_name = document.get("display_name")
    if display_name is not None and not isinstance(display_name, str):
        raise UserDataError(f"{path}: $.display_name must be a string")
    learning_data = document.get("learning_data")
    if learning_data is not None and not isinstance(learning_data, dict):
        raise UserDataError(f"{path}: $.learning_data must be a JSON object")
    problem = schemas.problem("PERSONAL_DATA_FILE", document)
    if problem is not None:
        raise UserDataError(f"{path}: {problem}")
    _check_storable_in(path, preferences, "$.preferences")
    _check_storable_in(path, learning_data, "$.learning_data")
    return PersonalDataFile(path, owner, preferences, display_name, learning_data, sha256_hex(raw))


def _check_storable_in(path: Path, value: Any, where: str) -> None:
    try:
        check_storable(value, where)
    except UserDataError as exc:
        raise UserDataError(f"{path}: {exc}") from None


def _bare_preferences(path: Path, document: dict[str, Any], username: str, raw: bytes) -> PersonalDataFile:
    """Validate a bare object of preferences (the original product's data file) read for username."""
    if document.get("format") == FORMAT:
        raise UserDataError(f"{path} is a piper-ops user export, not a personal-data file; "
                            f"import it with import-user --data {path}")
    # An envelope that lost its version line would otherwise land in preferences as keys "username", "preferences".
    envelope = [key for key in ("username", "preferences") if key in document]
    if envelope:
        raise UserDataError(f"{path} has $.{envelope[0]} but no $.piper_personal_data; add \"piper_personal_data\": 1 "
                            "(the format: docs/USER_DATA.md), or, for a bare object of preferences, rename that key")
    if not document:
        raise UserDataError(f"{path} is an empty JSON object: no preferences to migrate; put the preferences in it")
    problem = schemas.problem("PERSONAL_DATA_FILE", {"preferences": document})  # what the preferences column takes
    if problem is not None:
        raise UserDataError(f"{path}: {problem.replace('$.preferences', '$', 1)}")
    _check_storable_in(path, document, "$")
    return PersonalDataFile(path, username, document, None, None, sha256_hex(raw), names_user=False)


def shown_keys(keys: Iterable[str], limit: int = 12) -> str:
    """Return keys for a one-line message, sorted: `a, b, "odd key"`, and `... and N more` past limit."""
    ordered = sorted(keys)
    shown = ", ".join(map(_shown_key, ordered[:limit]))
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")


def _shown_key(key: str) -> str:
    key = key if len(key) <= 60 else key[:57] + "..."
    plain = key and key.isprintable() and "," not in key and key.strip() == key
    return key if plain else json.dumps(key, ensure_ascii=False)


def export_head(*, environment: str, database: str, schema_revision: str | None) -> bytes:
    """Return the export document up to its payload: format, version, time and source."""
    envelope = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"environment": environment, "database": database, "schema_revision": schema_revision},
    }
    return json.dumps(envelope, ensure_ascii=False, indent=1)[:-2].encode("utf-8") + _PAYLOAD_KEY  # no closing "\n}"


def export_tail(checksum: str) -> bytes:
    """Return the export document after its payload: the payload's checksum."""
    return b',\n "checksum": ' + json.dumps({"algorithm": "sha256", "value": checksum}).encode() + b"\n}\n"


def build_export(*, environment: str, database: str, schema_revision: str | None,
                 payload: Sequence[bytes | memoryview]) -> tuple[bytes, str]:
    """Return the export document around a payload's JSON text (UTF-8, in parts), and the payload's checksum.

    The parts are hashed and copied once each: megabytes of preferences are not joined twice.
    """
    digest = hashlib.sha256()
    for part in payload:
        digest.update(part)
    checksum = digest.hexdigest()
    head = export_head(environment=environment, database=database, schema_revision=schema_revision)
    return b"".join((head, *payload, export_tail(checksum))), checksum


_PAYLOAD_KEY = b',\n "payload": '
#: How a NUL or a surrogate is written in JSON text (\u0000, \ud800-\udfff): the payload is walked only then.
_ESCAPED_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")


def parse_export(raw: bytes, origin: str) -> ExportDocument:
    """Verify an export document's format, version and checksum, and return what it carries."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserDataError(f"{origin} is not UTF-8 text; save it as UTF-8 JSON") from None
    start = text.find(_PAYLOAD_KEY.decode())
    if start < 0:
        document = _parse_json(raw, origin)  # says what is wrong: not JSON, cut short, or not ours
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise UserDataError(f"{origin} is not a piper-ops user export (no \"format\": \"{FORMAT}\"); "
                                "pass a file made by export_user_data.py")
        raise UserDataError(f"{origin} was reformatted or changed after export (its payload is not where export "
                            "wrote it); export the user again")
    begin = start + len(_PAYLOAD_KEY)
    while text[begin:begin + 1] in (" ", "\n", "\r", "\t"):  # spacing around the payload is not part of it
        begin += 1
    try:
        with collector_paused():
            # A key given twice anywhere is refused: what a reader of the file sees must be what is imported.
            decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float,
                                       object_pairs_hook=_unique_keys)
            payload, end = decoder.raw_decode(text, begin)
        envelope = json.loads(text[:begin] + "null" + text[end:], object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise UserDataError(f"{origin} {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserDataError(f"{origin} is not valid JSON at line {exc.lineno} column {exc.colno} (the file looks cut "
                            "short or damaged); export the user again") from None
    except RecursionError:
        raise UserDataError(f"{origin} nests too deeply to read; flatten the data") from None
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise UserDataError(f"{origin} holds a number too long to read ({exc}); fix the data") from None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise UserDataError(f"{origin} is not a piper-ops user export (no \"format\": \"{FORMAT}\"); pass a file made by export_user_data.py")
    version = envelope.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise UserDataError(f"{origin} has format_version {version!r}; this piper-ops reads version {FORMAT_VERSION}")
    checksum, source = envelope.get("checksum"), envelope.get("source")
    if not isinstance(payload, dict) or not isinstance(checksum, dict) or not isinstance(source, dict):
        raise UserDataError(f"{origin} lacks its payload, checksum or source; export the user again")
    if checksum.get("algorithm") != "sha256" or not isinstance(checksum.get("value"), str):
        raise UserDataError(f"{origin}: $.checksum must be a sha256 value; export the user again")
    payload_json = text[begin:end].encode("utf-8")
    actual = sha256_hex(payload_json)
    if actual != checksum["value"]:
        raise UserDataError(f"{origin} does not match its checksum: it was changed or damaged after export; export the user again")
    user, preferences = payload.get("user"), payload.get("preferences")
    if not isinstance(user, dict) or not isinstance(user.get("username"), str) or not isinstance(user.get("email"), str):
        raise UserDataError(f"{origin}: $.payload.user must hold a username and an email")
    if not isinstance(preferences, dict):
        raise UserDataError(f"{origin}: $.payload.preferences must be a JSON object")
    problem = schemas.problem("EXPORT_DOCUMENT", {**envelope, "payload": payload})
    if problem is not None:
        raise UserDataError(f"{origin}: {problem}; the database would not take it")
    if _ESCAPED_UNSTORABLE.search(payload_json):  # the only ways a NUL or a surrogate can stand in JSON text
        _walk_storable(preferences, "$.payload.preferences")
        _walk_storable(payload.get("learning_data"), "$.payload.learning_data")
    keys = payload.get("keys")
    return ExportDocument(
        exported_at=str(envelope.get("exported_at", "")),
        source_environment=str(source.get("environment", "")),
        source_database=str(source.get("database", "")),
        schema_revision=source.get("schema_revision"),
        user=user,
        preferences=preferences,
        learning_data=payload.get("learning_data"),
        keys=list(keys) if isinstance(keys, list) else None,
        checksum=actual,
        payload_json=payload_json,
    )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while parsed JSON is alive (here: while it is parsed).

    Megabytes of JSON become millions of objects and no reference cycles; the collector's
    repeated passes over them cost a third of the parse, and as much again after it
    (docs/BENCHMARKS.md). Reference counting still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _no_constant(name: str) -> Any:
    raise UserDataError(f"the data holds {name}, which JSON does not allow and PostgreSQL cannot store; fix the data")


def no_changes() -> dict[str, list[str]]:
    """Return the changed_keys of a change that changes nothing."""
    return {"added": [], "changed": [], "removed": []}


def summarize_changes(changes: dict[str, list[str]]) -> str:
    """Return a one-line summary of changed top-level keys, e.g. `added: a, b; changed: c`."""
    def _shown(key: str) -> str:
        return key if key.isprintable() and "," not in key else json.dumps(key, ensure_ascii=False)

    parts = [f"{kind}: {', '.join(map(_shown, keys))}" for kind, keys in changes.items() if keys]
    return "; ".join(parts) if parts else "no changes"


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    """Return the top-level preference keys added, changed and removed between two versions."""
    return {
        "added": sorted(k for k in after if k not in before),
        "changed": sorted(k for k in after if k in before and before[k] != after[k]),
        "removed": sorted(k for k in before if k not in after),
    }


def _read(path: Path) -> bytes:
    try:
        return read_regular_file(path, MAX_DOCUMENT_BYTES, what="personal-data file")
    except UsageError as exc:
        raise UserDataError(str(exc)) from None


def _parse_json(raw: bytes, origin: object) -> Any:
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys, parse_float=_finite_float, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise UserDataError(f"{origin} {exc}") from None
    except UnicodeDecodeError:
        raise UserDataError(f"{origin} is not UTF-8 text; save it as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(raw.rstrip()) - 1 or exc.msg.startswith("Unterminated")
        hint = " (the file looks cut short)" if truncated else ""
        raise UserDataError(f"{origin} is not valid JSON at line {exc.lineno} column {exc.colno}{hint}; fix or re-create it") from None
    except RecursionError:
        raise UserDataError(f"{origin} nests too deeply to read; flatten the data") from None
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise UserDataError(f"{origin} holds a number too long to read ({exc}); fix the data") from None


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, refusing a key given twice (JSON tools differ on which one wins)."""
    built = dict(pairs)
    if len(built) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise _DuplicateKey(f"gives the key {_path_key(twice)} twice (JSON tools differ on which one counts); "
                            "keep one")
    return built


def _path_key(key: str) -> str:
    return key if key.isidentifier() else json.dumps(key, ensure_ascii=False)
