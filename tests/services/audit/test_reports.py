"""services/audit/reports.py: JSON and SARIF report data, findings redacted in every format.

The SARIF is checked against the official 2.1.0 schema (tests/data/sarif/, with its origin) with
format checks (uri, uri-reference: rfc3986-validator), and against what GitHub code scanning
requires (docs.github.com/en/code-security/code-scanning/integrating-with-code-scanning/
sarif-support-for-code-scanning).
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from services import audit
from services.project import CODE_ROOT, Project
from tests.services.audit import FAKE_EMAIL, git

SCHEMA = CODE_ROOT / "tests" / "data" / "sarif" / "sarif-schema-2.1.0.json"


@cache
def _validator() -> jsonschema.Draft4Validator:
    # FormatChecker() holds every format jsonschema knows (the draft-04 one lacks uri-reference).
    checker = jsonschema.FormatChecker()
    assert {"uri", "uri-reference"} <= set(checker.checkers), "install rfc3986-validator (pyproject's test extra)"
    return jsonschema.Draft4Validator(json.loads(SCHEMA.read_text()), format_checker=checker)


def assert_github_sarif(sarif: dict[str, Any]) -> None:
    """Fail unless sarif is valid SARIF 2.1.0 (schema and formats) with every property GitHub requires."""
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(sarif)]
    assert errors == []
    assert sarif["version"] == "2.1.0"
    for run in sarif["runs"]:
        driver = run["tool"]["driver"]
        assert driver["name"]
        if "informationUri" in driver:
            assert urlsplit(driver["informationUri"]).scheme in ("http", "https")
        rules = {rule["id"]: rule for rule in driver.get("rules", [])}
        for rule in rules.values():
            for key in ("shortDescription", "fullDescription", "help"):
                assert rule[key]["text"], (rule["id"], key)
        assert run["columnKind"] in ("unicodeCodePoints", "utf16CodeUnits")
        for result in run["results"]:
            assert result["ruleId"] in rules and result["message"]["text"]
            assert result["partialFingerprints"]["primaryLocationLineHash"]
            [location] = result["locations"]
            physical = location["physicalLocation"]
            uri = physical["artifactLocation"]["uri"]
            parts = urlsplit(uri)
            # A relative reference to a path in the repository (no scheme, no leading slash), or file:.
            assert (parts.scheme == "" and not uri.startswith("/")) or parts.scheme == "file", uri
            region = physical["region"]
            for key in ("startLine", "startColumn", "endLine", "endColumn"):
                assert isinstance(region[key], int) and region[key] >= 1, key
            assert (region["endLine"], region["endColumn"]) > (region["startLine"], region["startColumn"])


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
                                                     "end_line": 1, "end_column": 9,
                                                     "rule": data["findings"][0]["rule"], "kind": "username",
                                                     "match": "z****", "sha256": "x"}
    sarif = audit.report_sarif(report)
    assert_github_sarif(sarif)
    run = sarif["runs"][0]
    result = run["results"][0]
    assert "informationUri" not in run["tool"]["driver"]
    assert result["ruleId"] == run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"]
    physical = result["locations"][0]["physicalLocation"]
    assert physical["region"] == {"startLine": 1, "startColumn": 4, "endLine": 1, "endColumn": 9}
    assert physical["artifactLocation"] == {"uri": "config/PIPER.md", "uriBaseId": "%SRCROOT%"}
    assert "properties" not in result


def test_columns_are_code_points_and_a_match_may_end_on_the_next_line(project: Project) -> None:
    (project.config_dir / "PIPER.md").write_text("Grüße 漢字 zquux\nby Zanzibar\n> Quuxley now\n")
    sarif = audit.report_sarif(audit.run_audit(audit.piper_md_targets(project), audit.load_rules(project)))
    assert_github_sarif(sarif)
    assert sarif["runs"][0]["columnKind"] == "unicodeCodePoints"
    regions = [r["locations"][0]["physicalLocation"]["region"] for r in sarif["runs"][0]["results"]]
    assert regions == [{"startLine": 1, "startColumn": 10, "endLine": 1, "endColumn": 15},
                       {"startLine": 2, "startColumn": 4, "endLine": 3, "endColumn": 10}]


def test_the_same_term_in_two_files_or_twice_in_one_has_distinct_fingerprints(project: Project) -> None:
    (project.root / "a.md").write_text("zquux\n")
    (project.root / "b.md").write_text("zquux and zquux\n")
    targets = audit.path_targets(project, [str(project.root / "a.md"), str(project.root / "b.md")])
    sarif = audit.report_sarif(audit.run_audit(targets, audit.load_rules(project)))
    assert_github_sarif(sarif)
    results = sarif["runs"][0]["results"]
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results]
    assert uris == ["a.md", "b.md", "b.md"]
    assert len({r["partialFingerprints"]["primaryLocationLineHash"] for r in results}) == 3
    assert len({r["fingerprints"]["piperAuditLocation/v1"] for r in results}) == 3
    assert len({r["partialFingerprints"]["matchSha256/v1"] for r in results}) == 1  # the allowlist's key


def test_uris_are_relative_to_the_repository_root_not_the_current_directory(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    (project.root / "docs" / "deep").mkdir(parents=True)
    (project.root / "docs" / "deep" / "notes with space.md").write_text("zquux\n")
    monkeypatch.chdir(project.root / "docs")
    targets = audit.path_targets(project, [os.path.join("deep", "notes with space.md")])
    sarif = audit.report_sarif(audit.run_audit(targets, audit.load_rules(project)))
    assert_github_sarif(sarif)
    location = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "docs/deep/notes%20with%20space.md", "uriBaseId": "%SRCROOT%"}


def test_a_file_outside_the_repository_is_a_file_uri(project: Project,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "x.md"
    outside.write_text("zquux\n")
    sarif = audit.report_sarif(audit.run_audit(audit.path_targets(project, [str(outside)]), audit.load_rules(project)))
    assert_github_sarif(sarif)
    location = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": Path(outside).as_uri()}


def test_staged_and_history_uris_are_paths_with_the_version_in_properties(project: Project) -> None:
    root = project.root
    git(root, "init", "-q")
    (root / "config" / "PIPER.md").write_text("by zquux\n")
    git(root, "add", "config/PIPER.md")
    git(root, "commit", "-qm", "leak")
    commit = os.popen(f"git -C {root} rev-parse HEAD").read().strip()
    rules = audit.load_rules(project)
    for targets, properties in ((audit.staged_targets(project, rules, False), None),
                                (audit.history_targets(project, rules, False), {"commit": commit[:12]})):
        if properties is None:
            (root / "config" / "PIPER.md").write_text("by zquux, again zquux\n")
            git(root, "add", "config/PIPER.md")
            targets = audit.staged_targets(project, rules, False)
            properties = {"staged": True}
        sarif = audit.report_sarif(audit.run_audit(targets, rules))
        assert_github_sarif(sarif)
        result = sarif["runs"][0]["results"][0]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "config/PIPER.md"
        assert result["properties"] == properties
        assert ("in commit " + commit[:12] if "commit" in properties else "(staged)") in result["message"]["text"]


def test_an_empty_report_is_valid_sarif(project: Project) -> None:
    (project.config_dir / "PIPER.md").write_text("nothing personal\n")
    sarif = audit.report_sarif(audit.run_audit(audit.piper_md_targets(project), audit.load_rules(project)))
    assert_github_sarif(sarif)
    assert sarif["runs"][0]["results"] == [] and sarif["runs"][0]["tool"]["driver"]["rules"] == []


def test_the_schema_check_catches_what_github_refuses() -> None:
    # The check itself works: a relative informationUri (the old output) fails the schema's uri format.
    bad = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x", "informationUri": "docs/PIPER_MD.md"}},
                                         "results": []}]}
    assert any(e.validator == "format" for e in _validator().iter_errors(bad))
