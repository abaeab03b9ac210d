"""services/audit/targets.py: what git tracks, stages and keeps in its history; git missing or failing."""

from __future__ import annotations

import pytest

from services import audit
from services.errors import AuditError
from services.project import Project
from tests.services.audit import git


def test_all_skips_the_rule_sources_and_binary_files(project: Project) -> None:
    git(project.root, "init", "-q")
    (project.config_dir / "PIPER.md").write_text("generic\n")
    (project.root / "notes.txt").write_text("ask zquux\n")
    (project.root / "blob.bin").write_bytes(b"\0zquux")
    git(project.root, "add", ".")
    report = audit.run_audit(audit.tracked_targets(project, audit.load_rules(project)), audit.load_rules(project))
    assert [f.path for f in report.findings] == ["notes.txt"]
    assert "environments/fake.yaml" not in report.scanned and report.skipped == ("blob.bin",)


def test_history_finds_a_version_that_was_removed(project: Project) -> None:
    git(project.root, "init", "-q")
    piper = project.config_dir / "PIPER.md"
    piper.write_text("owner: Zanzibar Quuxley\n")
    (project.config_dir / "PIPER.md.backup-20250101").write_text("contact zquux\n")
    git(project.root, "add", ".")
    git(project.root, "commit", "-q", "-m", "first")
    piper.write_text("generic\n")
    (project.config_dir / "PIPER.md.backup-20250101").unlink()
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "clean")
    rules = audit.load_rules(project)
    assert audit.run_audit(audit.piper_md_targets(project), rules).clean
    report = audit.run_audit(audit.history_targets(project, rules, False), rules)
    assert sorted(f.path.split(":", 1)[1] for f in report.findings) == ["config/PIPER.md", "config/PIPER.md.backup-20250101"]
    assert all(len(f.path.split(":", 1)[0]) == 12 for f in report.findings)


def test_staged_reads_the_index_not_the_working_tree(project: Project) -> None:
    git(project.root, "init", "-q")
    piper = project.config_dir / "PIPER.md"
    piper.write_text("by zquux\n")
    git(project.root, "add", "config/PIPER.md")
    piper.write_text("generic\n")  # the working tree is clean, the index is not
    rules = audit.load_rules(project)
    report = audit.run_audit(audit.staged_targets(project, rules, False), rules)
    assert [(f.path, f.kind) for f in report.findings] == [(":config/PIPER.md", "username")]


def test_git_scopes_outside_a_repository_cannot_run(project: Project) -> None:
    with pytest.raises(AuditError, match="--all: git failed"):
        audit.tracked_targets(project, audit.load_rules(project))
