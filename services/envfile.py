"""The project's `.env` file: which environment is selected, and each environment's secrets.

The file is git-ignored and always written with mode 0600 through an atomic rename. Lines this
module does not manage are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from services.errors import UsageError
from services.files import read_regular_file, write_atomic

#: A .env holds a handful of lines; anything bigger is not one (and reads are bounded).
MAX_BYTES = 1 << 20
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read(path: Path) -> dict[str, str]:
    """Return the KEY=VALUE pairs of a .env file; an absent file gives an empty dict."""
    if not Path(path).exists() and not Path(path).is_symlink():
        return {}
    return _values(_text(Path(path)).splitlines())


def _values(lines: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in lines:
        if line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            values[match.group(1)] = _unquote(match.group(2))
    return values


def update(path: Path, changes: dict[str, str | None]) -> None:
    """Set (or, with None, remove) keys in a .env file, keeping every other line; mode 0600.

    Held under a lock: setups of two environments at once both add their passwords, neither
    overwrites the other's.
    """
    update_with(Path(path), lambda current: changes)


def update_with(path: Path, decide: Callable[[dict[str, str]], dict[str, str | None]]) -> dict[str, str | None]:
    """Set (or remove) the keys that decide(current values) returns, under the lock; return what changed.

    decide sees the file as it is under the lock, so a value derived from another one (the
    DATABASE_URL of the selected environment) is never written beside a selection that changed
    meanwhile. Keys whose value is already the one asked for are left alone, and when nothing
    changes the file is not rewritten.
    """
    from filelock import FileLock

    path = Path(path)
    with FileLock(str(path.with_name(path.name + ".lock")), mode=0o600):
        exists = path.exists() or path.is_symlink()
        # Read first: what is not a readable UTF-8 file is refused before anything is written.
        lines = _text(path).splitlines() if exists else []
        current = _values(lines)
        changes = {key: value for key, value in decide(dict(current)).items() if current.get(key) != value}
        if changes:
            _update(path, lines if exists else None, changes)
        return changes


def _update(path: Path, lines: list[str] | None, changes: dict[str, str | None]) -> None:
    if lines is None:
        lines = ["# Written by piper-ops (invoke setup). Holds secrets: never commit, never share."]
    pending = dict(changes)
    kept: list[str] = []
    for line in lines:
        match = _LINE.match(line) if not line.lstrip().startswith("#") else None
        if match and match.group(1) in pending:
            value = pending.pop(match.group(1))
            if value is not None:
                kept.append(f"{match.group(1)}={value}")
            continue
        kept.append(line)
    kept.extend(f"{key}={value}" for key, value in pending.items() if value is not None)
    write_atomic(path, "\n".join(kept) + "\n", mode=0o600)


def _text(path: Path) -> str:
    try:
        return read_regular_file(path, MAX_BYTES, what=".env file").decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; fix it, or move it away and run `invoke setup` "
                         "(which gets you back into your environments with new passwords)") from None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
