"""Report data for the edge: an audit's findings as JSON-ready or SARIF 2.1.0 data, matches redacted.

The SARIF is what GitHub code scanning accepts (docs.github.com, "SARIF support for code
scanning"): every rule has a short and a full description and help text; every result a message,
one location whose `artifactLocation.uri` is the path relative to the repository root (uriBaseId
`%SRCROOT%`), a region with start and end, columns counted in Unicode code points (`columnKind`),
and fingerprints that hold the file's path, so the same name in two files is two alerts. The
version a result was found in, when it is not the working tree, is in the result's properties
(`commit`, or `staged`): `e152fcf91aa4:config/PIPER.md` would parse as a URI of scheme `e152fcf91aa4`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from services.audit.rules import Rule
from services.audit.runner import AuditReport
from services.audit.scanner import Finding
from services.audit.targets import split_label

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
#: The base of every relative URI: the repository's root (SARIF §3.14.14's conventional name).
SRCROOT = "%SRCROOT%"
_HELP = ("Personal data must not reach git (ADR-040): it belongs in a user's preferences in their own "
         "environment's database. Remove it from the file, or, if it is not personal data, accept this "
         "finding in config/audit-allowlist.yaml by its rule id and sha256 (never the text). "
         "See docs/PIPER_MD.md in piper-ops.")
_DOCUMENT_HELP = ("An export document or personal-data file holds a user's data: keep it in the git-ignored "
                  "exports/ or private/ folder, never in a tracked path, whatever its name. Fake documents for "
                  "tests go in a path listed under fixtures: in config/audit-allowlist.yaml.")


def report_json(report: AuditReport) -> dict[str, Any]:
    """Return the report as JSON-ready data (matches redacted)."""
    return {
        "clean": report.clean,
        "findings": [_finding_dict(f) for f in report.findings],
        "allowed": [_finding_dict(f) for f in report.allowed],
        "scanned": len(report.scanned),
        "skipped": list(report.skipped),
    }


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {"path": finding.path, "line": finding.line, "column": finding.column, "end_line": finding.end_line,
            "end_column": finding.end_column, "rule": finding.rule, "kind": finding.kind,
            "match": finding.redacted, "sha256": finding.sha256}


def report_sarif(report: AuditReport) -> dict[str, Any]:
    """Return the report as SARIF 2.1.0 data (matches redacted) that GitHub code scanning accepts."""
    used = {f.rule for f in report.findings}
    rules = [_rule(r) for r in report.rules if r.id in used]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    seen: Counter[tuple[str, str, str]] = Counter()
    results = []
    for f in report.findings:
        version, path = split_label(f.path)
        key = (f.path, f.rule, f.sha256)
        seen[key] += 1
        results.append(_result(f, version, path, index[f.rule], seen[key]))
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "piper-ops audit-piper-md", "rules": rules}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


def _rule(rule: Rule) -> dict[str, Any]:
    document = rule.kind == "document"
    return {
        "id": rule.id,
        "name": "PersonalDataDocument" if document else "PersonalData" + rule.kind.title(),
        "shortDescription": {"text": f"personal data: {rule.description}"},
        "fullDescription": {"text": f"A tracked file holds personal data: {rule.description}. The matched text is "
                                    "never shown; findings carry its redaction and sha256."},
        "help": {"text": _DOCUMENT_HELP if document else _HELP},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["privacy", "personal-data"]},
    }


def _result(f: Finding, version: str, path: str, rule_index: int, occurrence: int) -> dict[str, Any]:
    where = f" ({'staged' if version == 'staged' else 'in commit ' + version})" if version else ""
    location: dict[str, Any] = {"uri": _uri(path)}
    if not PurePosixPath(path).is_absolute():
        location["uriBaseId"] = SRCROOT
    # GitHub keys alerts on primaryLocationLineHash: ours hashes the path, rule and match (never the line
    # number, so an alert survives edits above it) and counts repeats, so no two findings share one.
    line_hash = hashlib.sha256(f"{path}\0{f.rule}\0{f.sha256}".encode("utf-8", "surrogateescape")).hexdigest()
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": "error",
        "message": {"text": f"personal data ({f.kind}) {f.redacted}{where}; remove it or allowlist sha256 {f.sha256}"},
        "locations": [{"physicalLocation": {
            "artifactLocation": location,
            "region": {"startLine": f.line, "startColumn": f.column,
                       "endLine": f.end_line or f.line, "endColumn": f.end_column or f.column + len(f.redacted)},
        }}],
        "partialFingerprints": {"primaryLocationLineHash": f"{line_hash[:16]}:{occurrence}",
                                "matchSha256/v1": f.sha256},
        "fingerprints": {"piperAuditLocation/v1": f"{line_hash}:{occurrence}"},
    }
    if version == "staged":
        result["properties"] = {"staged": True}
    elif version:
        result["properties"] = {"commit": version}
    return result


def _uri(path: str) -> str:
    # A relative reference (percent-encoded, "/" kept), or a file: URI for a path outside the repository.
    if PurePosixPath(path).is_absolute():
        return "file://" + quote(path, safe="/")
    return quote(path, safe="/")
