"""services/audit/allowlist.py: findings accepted by rule and hash, optionally in some paths; bad lists."""

from __future__ import annotations

import pytest

from services import audit
from services.errors import AuditError
from services.project import Project


def test_allowlist_by_rule_and_hash_and_optional_paths(project: Project) -> None:
    (project.config_dir / "PIPER.md").write_text("line one\nby zquux\n")
    rules = audit.load_rules(project)
    finding = audit.run_audit(audit.piper_md_targets(project), rules).findings[0]
    allow = project.root / "allow.yaml"
    allow.write_text(f"allow:\n  - {{rule: {finding.rule}, sha256: {finding.sha256}, reason: accepted}}\n")
    # The entry holds a hash, not the text; it still applies when the line moves.
    assert "zquux" not in allow.read_text()
    (project.config_dir / "PIPER.md").write_text("\n\n\nmoved: ZQUUX\n")
    report = audit.run_audit(audit.piper_md_targets(project), rules, audit.load_allowlist(allow))
    assert report.clean and len(report.allowed) == 1
    allow.write_text(f"allow:\n  - {{rule: {finding.rule}, sha256: {finding.sha256}, paths: ['docs/*']}}\n")
    report = audit.run_audit(audit.piper_md_targets(project), rules, audit.load_allowlist(allow))
    assert not report.clean


def test_bad_allowlist_cannot_run(project: Project) -> None:
    allow = project.root / "allow.yaml"
    allow.write_text("allow:\n  - {rule: x, sha256: not-a-hash}\n")
    with pytest.raises(AuditError, match="sha256"):
        audit.load_allowlist(allow)
