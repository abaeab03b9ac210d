"""Report data for the edge: an audit's findings as JSON-ready or SARIF 2.1.0 data, matches redacted."""

from __future__ import annotations

from typing import Any

from services.audit.runner import AuditReport
from services.audit.scanner import Finding


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
    return {"path": finding.path, "line": finding.line, "column": finding.column, "rule": finding.rule,
            "kind": finding.kind, "match": finding.redacted, "sha256": finding.sha256}


def report_sarif(report: AuditReport) -> dict[str, Any]:
    """Return the report as SARIF 2.1.0 data (matches redacted), for code-scanning tools."""
    used = {f.rule for f in report.findings}
    rules = [{"id": r.id, "name": r.kind, "shortDescription": {"text": r.description},
              "defaultConfiguration": {"level": "error"}} for r in report.rules if r.id in used]
    results = [{
        "ruleId": f.rule,
        "level": "error",
        "message": {"text": f"personal data ({f.kind}) {f.redacted}; remove it or allowlist sha256 {f.sha256}"},
        "partialFingerprints": {"matchSha256/v1": f.sha256},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": f.path},
            "region": {"startLine": f.line, "startColumn": f.column},
        }}],
    } for f in report.findings]
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "piper-ops audit-piper-md", "informationUri":
                                      "docs/PIPER_MD.md", "rules": rules}}, "results": results}],
    }
