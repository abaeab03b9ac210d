"""Database-free projects with one fake profile: for the audit and the PIPER.md backups."""

from __future__ import annotations

from pathlib import Path

import pytest


def fake_profile(*terms: str, extra: str = "") -> str:
    """Return the YAML of a fake profile `fake` whose audit terms are `term: X, kind: Y` entries."""
    lines = ["name: fake", "branch: main", "default_user: {username: zquux, email: zquux@example.invalid}",
             "database: {name: piper_fake, port: 54399}", *([extra] if extra else []), "audit:", "  terms:"]
    lines += [f"    - {{{term}}}" for term in terms]
    return "\n".join(lines) + "\n"


def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile_yaml: str, piper_md: str) -> Path:
    """Make a database-free project in tmp_path with one fake profile and a PIPER.md; select it."""
    (tmp_path / "environments").mkdir()
    (tmp_path / "config").mkdir()
    (tmp_path / "environments" / "fake.yaml").write_text(profile_yaml)
    (tmp_path / "config" / "PIPER.md").write_text(piper_md)
    monkeypatch.setenv("PIPER_ROOT", str(tmp_path))
    monkeypatch.delenv("PIPER_ENV", raising=False)
    return tmp_path


#: Preferences no export, import or merge may change: text JSON must escape, deep nesting, numbers
#: JSON cannot round as floats, nulls, and keys with dots, quotes, newlines and nothing at all.
HOSTILE = {
    "ünïcödé ✓ 漢字 🎉": "ünïcödé ✓ 漢字 🎉",
    "nested": [1, [2, [3, None]], {"deep": [True, False, None]}],
    "numbers": [0, -1, 3.14159, 1e-10, 12345678901234567890, 1.5e10, -0.5],
    "nulls": None,
    "a.b.c": {"with \"quotes\" and 'single'": "back\\slash", "": "empty key"},
    "newline\nkey": "tab\there",
}


def config_backup_names(root: Path) -> list[str]:
    """Return the names of the PIPER.md backups in a project's config/, sorted."""
    return sorted(p.name for p in (root / "config").glob("PIPER.md.backup-*"))
