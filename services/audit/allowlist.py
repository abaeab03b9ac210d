"""The allowlist: findings accepted by rule id and the sha256 of the match, never by its text.

Its `fixtures` list names the paths (globs) of fake documents, such as the tests' corpus: an export
document or personal-data file there is not a finding. Everywhere else one is, whatever its name.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from services.audit.rules import read_yaml_file
from services.audit.targets import label_path
from services.errors import AuditError

#: Where accepted findings are listed (in git): rule id + sha256 of the match, never the text.
ALLOWLIST_PATH = "config/audit-allowlist.yaml"


@dataclass(frozen=True)
class AllowEntry:
    """One accepted finding: a rule id and the sha256 of the match, in any path or those matching paths."""

    rule: str
    sha256: str
    paths: tuple[str, ...] = ()
    reason: str = ""
    #: A fixture entry (`fixtures:` in the file): every document finding (an export or a personal-data
    #: file) in its paths is accepted, whatever its rule and hash: fake documents for the tests.
    fixture: bool = False

    def covers(self, rule: str, digest: str, path: str, kind: str = "") -> bool:
        if self.fixture:
            return kind == "document" and any(fnmatch.fnmatch(label_path(path), p) for p in self.paths)
        if rule != self.rule or digest != self.sha256:
            return False
        plain = label_path(path)
        return not self.paths or any(fnmatch.fnmatch(plain, pattern) for pattern in self.paths)


def load_allowlist(path: Path, *, required: bool = False) -> tuple[AllowEntry, ...]:
    """Return the accepted findings listed in path; a missing file is an empty list unless required
    (an allowlist named on the command line that is not there is an error: exit 2)."""
    if not path.exists():
        if required:
            raise AuditError(f"{path} does not exist; pass the allowlist file, or leave --allowlist out")
        return ()
    raw = read_yaml_file(path, "allowlist")
    items = (raw.get("allow") or []) if isinstance(raw, dict) else None
    fixtures = (raw.get("fixtures") or []) if isinstance(raw, dict) else None
    if not isinstance(items, list) or set(raw) - {"allow", "fixtures"}:
        raise AuditError(f"{path}: must be a mapping with an 'allow' list (and optionally 'fixtures'); "
                         "fix the allowlist")
    if not isinstance(fixtures, list) or not all(isinstance(p, str) and p.strip() for p in fixtures):
        raise AuditError(f"{path}: fixtures must be a list of glob patterns (paths of fake documents); "
                         "fix the allowlist")
    entries = []
    for index, item in enumerate(items):
        where = f"{path}: allow[{index}]"
        if not isinstance(item, dict) or set(item) - {"rule", "sha256", "paths", "reason"}:
            raise AuditError(f"{where} must have rule, sha256 and optionally paths and reason")
        rule, digest, paths = item.get("rule"), str(item.get("sha256", "")), item.get("paths", [])
        if not isinstance(rule, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise AuditError(f"{where} needs a rule id and the 64-hex sha256 the audit printed")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise AuditError(f"{where}: paths must be a list of glob patterns")
        entries.append(AllowEntry(rule, digest, tuple(paths), str(item.get("reason", ""))))
    if fixtures:
        entries.append(AllowEntry("", "", tuple(fixtures), "fake documents", fixture=True))
    return tuple(entries)

