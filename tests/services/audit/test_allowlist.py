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


EXPORT = '{"format": "piper-user-export", "format_version": 1, "payload": {}}\n'


def test_fixture_paths_accept_fake_documents_there_and_nowhere_else(project: Project) -> None:
    for where in ("tests/data/fake/u.json", "docs/u.json"):
        (project.root / where).parent.mkdir(parents=True, exist_ok=True)
        (project.root / where).write_text(EXPORT + "zquux\n")
    allow = project.root / "allow.yaml"
    allow.write_text("allow: []\nfixtures: ['tests/data/fake/*']\n")
    targets = audit.path_targets(project, [str(project.root / "tests/data/fake/u.json"),
                                           str(project.root / "docs/u.json")])
    report = audit.run_audit(targets, audit.load_rules(project), audit.load_allowlist(allow))
    # A fixture path accepts the document, never a term in it.
    assert [(f.path, f.rule) for f in report.allowed] == [("tests/data/fake/u.json", "export-document")]
    assert [(f.path, f.kind) for f in report.findings] == [("tests/data/fake/u.json", "username"),
                                                           ("docs/u.json", "document"), ("docs/u.json", "username")]


@pytest.mark.parametrize("text, problem", [("fixtures: tests/*\n", "fixtures must be a list"),
                                           ("fixtures: ['']\n", "fixtures must be a list"),
                                           ("allowed: []\n", "must be a mapping with an 'allow' list")])
def test_bad_fixtures_cannot_run(project: Project, text: str, problem: str) -> None:
    allow = project.root / "allow.yaml"
    allow.write_text(text)
    with pytest.raises(AuditError, match=problem):
        audit.load_allowlist(allow)


def test_this_repositorys_allowlist_names_the_hostile_corpus_as_fixtures() -> None:
    from services.project import CODE_ROOT

    entries = audit.load_allowlist(CODE_ROOT / audit.ALLOWLIST_PATH)
    assert any(e.fixture and "tests/data/hostile/*" in e.paths for e in entries)
