"""What the database will take, as JSON Schema: a document is checked against it before any write.

The checksum of an export is an integrity check, not a proof of origin (anyone can compute a
SHA-256), so every field is checked against the columns it lands in (services/database/models.py):
lengths, types, integer ranges, and text PostgreSQL cannot store (NUL characters, lone
surrogates). Validation is fastjsonschema's, compiled once per process; preferences and learning
data are only checked to be objects here (services/users/documents.check_storable walks them).
"""

from __future__ import annotations

from functools import cache
from typing import Any

#: Text PostgreSQL can store: no NUL, and no lone surrogate (which is no character at all).
_STORABLE = "^[^\\x00\\ud800-\\udfff]*$"
_INT4 = {"minimum": -(2**31), "maximum": 2**31 - 1}


def _text(max_length: int | None = None, *, nullable: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"] if nullable else "string", "pattern": _STORABLE}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


USER_FIELDS: dict[str, Any] = {
    "type": "object",
    "required": ["username", "email"],
    "properties": {
        "username": _text(64),
        "email": _text(254),
        "display_name": _text(200, nullable=True),
        "is_active": {"type": "boolean"},
        "is_verified": {"type": "boolean"},
        "alpha_wave": {"type": ["integer", "null"], **_INT4},
        "created_at": _text(64, nullable=True),
        "notes": _text(nullable=True),
    },
    "additionalProperties": False,
}

EXPORT_DOCUMENT: dict[str, Any] = {
    "type": "object",
    "required": ["format", "format_version", "payload", "checksum", "source"],
    "properties": {
        "exported_at": _text(64),
        "source": {"type": "object", "properties": {"environment": _text(64), "database": _text(64),
                                                    "schema_revision": _text(64, nullable=True)}},
        "payload": {
            "type": "object",
            "required": ["user", "preferences"],
            "properties": {
                "user": USER_FIELDS,
                "preferences": {"type": "object"},
                "learning_data": {"type": ["object", "null"]},
                "keys": {"type": ["array", "null"], "items": _text(1000)},
            },
            "additionalProperties": False,
        },
    },
}

PERSONAL_DATA_FILE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": _text(64),
        "display_name": _text(200, nullable=True),
        "preferences": {"type": "object"},
        "learning_data": {"type": ["object", "null"]},
    },
}


@cache
def _validator(name: str) -> Any:
    import fastjsonschema

    return fastjsonschema.compile(globals()[name])


def problem(name: str, document: Any) -> str | None:
    """Return what is wrong with document against the schema called name (`$.path ...`), or None."""
    from fastjsonschema import JsonSchemaValueException

    try:
        _validator(name)(document)
    except JsonSchemaValueException as exc:
        where = "$" + exc.name[len("data"):] if exc.name.startswith("data") else exc.name
        if exc.rule == "pattern":
            return f"{where} holds a NUL character or a lone surrogate, which PostgreSQL cannot store"
        return exc.message.replace(exc.name, where, 1)
    return None
