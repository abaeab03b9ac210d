"""services/audit/rules.py: profiles, a rules file and --terms; a bad rule stops the audit before it runs."""

from __future__ import annotations

import pytest

from services import audit
from services.errors import AuditError
from services.project import Project
from tests.services.audit import FAKE_PROFILE


def test_bad_rule_cannot_run(project: Project) -> None:
    (project.environments_dir / "fake.yaml").write_text(FAKE_PROFILE + "    - {term: '--', kind: name}\n")
    with pytest.raises(AuditError, match="no letters"):
        audit.load_rules(project)
    (project.environments_dir / "fake.yaml").write_text(FAKE_PROFILE + "    - {term: zz, kind: shoe-size}\n")
    with pytest.raises(AuditError, match="kind 'shoe-size' is unknown"):
        audit.load_rules(project)


def test_a_rules_file_and_terms_without_any_profile(tmp_path) -> None:
    root = Project(tmp_path)
    (tmp_path / ".piper-audit.yaml").write_text(
        "terms:\n  - Zanzibar Quuxley\n  - {term: QXO, kind: organisation, case_sensitive: true}\n")
    rules = audit.load_rules(root, profiles=False, terms=audit.parse_terms(" zquux , ,qx-test-org"))
    kinds = sorted((r.kind, r.case_sensitive) for r in rules.rules if r.term)
    assert kinds == [("name", False), ("organisation", True), ("other", False), ("other", False)]
    assert rules.sources == (tmp_path / ".piper-audit.yaml",)
    assert {r.id for r in audit.DETECTORS} <= {r.id for r in rules.rules}
    # No rules file, no terms: the detectors alone.
    (tmp_path / ".piper-audit.yaml").unlink()
    assert audit.load_rules(root, profiles=False).rules == audit.DETECTORS


@pytest.mark.parametrize("text, problem", [("- a\n", "must be a mapping with a 'terms' list"),
                                           ("terms: [{term: a, colour: red}]\n", r"terms\[0\] must be a term"),
                                           ("terms: [{term: a, case_sensitive: maybe}]\n",
                                            "case_sensitive true or false"),
                                           ("terms: [{term: a, kind: pet}]\n", "kind 'pet' is unknown"),
                                           ("terms: ['  ']\n", "no letters or digits"),
                                           ("terms: [a\n", "cannot be read as YAML")])
def test_a_bad_rules_file_cannot_run(tmp_path, text: str, problem: str) -> None:
    (tmp_path / "rules.yaml").write_text(text)
    with pytest.raises(AuditError, match=problem):
        audit.load_rules(Project(tmp_path), profiles=False, rules_file=tmp_path / "rules.yaml")


def test_a_rules_file_named_but_missing_cannot_run(tmp_path) -> None:
    with pytest.raises(AuditError, match="does not exist; pass the rules file"):
        audit.load_rules(Project(tmp_path), profiles=False, rules_file=tmp_path / "nope.yaml")
