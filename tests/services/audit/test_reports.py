"""services/audit/reports.py: JSON and SARIF report data, findings redacted in every format."""

from __future__ import annotations

import json

from services import audit
from services.project import Project
from tests.services.audit import FAKE_EMAIL


def test_findings_are_redacted_in_every_format(project: Project) -> None:
    (project.config_dir / "PIPER.md").write_text(f"# Title\nOwner: Zanzibar Quuxley, {FAKE_EMAIL}\n")
    report = audit.run_audit(audit.piper_md_targets(project), audit.load_rules(project))
    assert [f.redacted for f in report.findings] == ["Z" + "*" * 15, "z" + "*" * (len(FAKE_EMAIL) - 1)]
    for data in (audit.report_json(report), audit.report_sarif(report), [f.__dict__ for f in report.findings]):
        dumped = json.dumps(data)
        assert "Quuxley" not in dumped and "quux-mail" not in dumped


def test_json_and_sarif_shapes(project: Project) -> None:
    (project.config_dir / "PIPER.md").write_text("by zquux\n")
    report = audit.run_audit(audit.piper_md_targets(project), audit.load_rules(project))
    data = audit.report_json(report)
    assert data["clean"] is False
    assert data["findings"][0] | {"sha256": "x"} == {"path": "config/PIPER.md", "line": 1, "column": 4,
                                                     "rule": data["findings"][0]["rule"], "kind": "username",
                                                     "match": "z****", "sha256": "x"}
    sarif = audit.report_sarif(report)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    result = run["results"][0]
    assert result["ruleId"] in {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 1, "startColumn": 4}
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "config/PIPER.md"
