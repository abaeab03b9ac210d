"""The personal-data audit: whole words, per-rule case, tricky places, redaction, allowlist, git scopes.

Personal data here is obviously fake (Zanzibar Quuxley, qx-test-org); the ADR's own words come from
the repository's environments/dev.yaml, copied into a temporary project.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from services import audit
from services.errors import AuditError
from services.project import CODE_ROOT, Project
from tests.conftest import fake_profile

FAKE_PROFILE = fake_profile("term: Zanzibar Quuxley, kind: name", "term: zquux, kind: username",
                            "term: qx-test-org, kind: organisation")
AT = "@"  # built at run time, so that this file holds no address an audit of the repo would flag
FAKE_EMAIL = "zanzibar.quuxley" + AT + "quux-mail.zz"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    (tmp_path / "environments").mkdir()
    (tmp_path / "config").mkdir()
    shutil.copy(CODE_ROOT / "environments" / "dev.yaml", tmp_path / "environments" / "dev.yaml")
    (tmp_path / "environments" / "fake.yaml").write_text(FAKE_PROFILE)
    monkeypatch.setenv("PIPER_ROOT", str(tmp_path))
    monkeypatch.delenv("PIPER_ENV", raising=False)
    return Project(tmp_path)


def _scan(project: Project, text: str) -> list[audit.Finding]:
    return audit.audit_content(text.encode("utf-8"), audit.load_rules(project), "t.md")


@pytest.mark.parametrize("text", ["Available", "Privacy", "evaluate", "relevant", "Vancouver", "va", "Va",
                                  "christians", "Christianity", "xianxia", "dragons", "DRAGONSLAYER", "VA2",
                                  "quuxleyZanzibar", "zquux_bot", "christianö"])
def test_words_that_the_adr_grep_flags_but_are_not_personal_data(project: Project, text: str) -> None:
    assert _scan(project, f"The {text} word.\n") == []


@pytest.mark.parametrize("text", ["VA", "VA's", "(VA)", "xian" + AT + "x.zz", "Christian", "CHRISTIAN",
                                  "christian", "DRAGONS", "VA\u2019s", "\"VA\"", "VA."])
def test_personal_data_words_match(project: Project, text: str) -> None:
    findings = _scan(project, f"See {text} here.\n")
    assert findings, text
    assert findings[0].line == 1 and findings[0].column == 5 + text.index(text.lstrip("(\""))


def test_the_generic_piper_md_passes_where_the_adr_grep_fails(project: Project) -> None:
    shutil.copy(CODE_ROOT / "config" / "PIPER.md", project.config_dir / "PIPER.md")
    grep = subprocess.run(["grep", "-c", "-i", r"christian\|xian\|VA\|DRAGONS", "config/PIPER.md"],
                          cwd=project.root, capture_output=True, text=True)
    assert int(grep.stdout.strip()) > 0  # the literal grep can never pass a real document
    report = audit.run_audit(audit.piper_md_targets(project), audit.load_rules(project))
    assert report.clean and report.scanned == ("config/PIPER.md",)


TRICKY = {
    "start of line": ("zquux opened it\n", 1, 1),
    "end of line": ("opened by zquux\n", 1, 11),
    "markdown link text": ("see [Zanzibar Quuxley](https://x.zz/a)\n", 1, 6),
    "markdown link target": ("see [profile](https://x.zz/zquux)\n", 1, 28),
    "code block": ("```\nuser = 'zquux'\n```\n", 2, 9),
    "punctuation": ("(qx-test-org), 'zquux'; zquux!\n", 1, 2),
    "other case": ("ZANZIBAR QUUXLEY and Qx-Test-Org\n", 1, 1),
    "line break between words": ("written by Zanzibar\nQuuxley today\n", 1, 12),
    "quoted line break": ("> by Zanzibar\n> Quuxley\n", 1, 6),
    "crlf line break": ("by Zanzibar\r\n  Quuxley\r\n", 1, 4),
    "after non-ascii text": ("Grüße, zquux\n", 1, 8),
}


@pytest.mark.parametrize("case", sorted(TRICKY))
def test_tricky_places(project: Project, case: str) -> None:
    text, line, column = TRICKY[case]
    findings = _scan(project, text)
    assert findings, case
    assert (findings[0].line, findings[0].column) == (line, column)


def test_detectors_find_emails_and_phone_numbers_but_not_placeholders(project: Project) -> None:
    text = (f"mail {FAKE_EMAIL} or call +99 20 7946 0958 or (555) 010-0199\n"
            f"placeholders: user{AT}example.com, a{AT}b.invalid; dates 2024-01-15, version 3.11.7, 20,000 files\n")
    kinds = [(f.kind, f.line) for f in _scan(project, text)]
    assert kinds == [("email", 1), ("phone", 1), ("phone", 1)]


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


def test_bad_allowlist_and_bad_rule_cannot_run(project: Project) -> None:
    allow = project.root / "allow.yaml"
    allow.write_text("allow:\n  - {rule: x, sha256: not-a-hash}\n")
    with pytest.raises(AuditError, match="sha256"):
        audit.load_allowlist(allow)
    (project.environments_dir / "fake.yaml").write_text(FAKE_PROFILE + "    - {term: '--', kind: name}\n")
    with pytest.raises(AuditError, match="no letters"):
        audit.load_rules(project)
    (project.environments_dir / "fake.yaml").write_text(FAKE_PROFILE + "    - {term: zz, kind: shoe-size}\n")
    with pytest.raises(AuditError, match="kind 'shoe-size' is unknown"):
        audit.load_rules(project)


def test_unreadable_file_cannot_run(project: Project) -> None:
    (project.config_dir / "PIPER.md").mkdir()
    with pytest.raises(AuditError, match="cannot be read"):
        audit.run_audit(audit.piper_md_targets(project), audit.load_rules(project))


def test_matches_across_chunk_boundaries_are_found_once(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "CHUNK_SIZE", 4096)
    monkeypatch.setattr(audit, "BATCH_BYTES", 0)  # stream even a small file
    filler = "Available and relevant text. " * 40 + "\n"
    parts, expected = [], []
    line = 1
    for i in range(60):
        parts.append(filler[: 37 * i % 1100])
        parts.append("x" * (i % 7) + " Zanzibar\nQuuxley " + FAKE_EMAIL + " zquux\n")
        line += parts[-2].count("\n")
        expected += [("name", line), ("email", line + 1), ("username", line + 1)]
        line += 2
    (project.config_dir / "PIPER.md").write_text("".join(parts))
    report = audit.run_audit(audit.piper_md_targets(project), audit.load_rules(project))
    assert [(f.kind, f.line) for f in report.findings] == expected


def test_all_skips_the_rule_sources_and_binary_files(project: Project) -> None:
    _git(project.root, "init", "-q")
    (project.config_dir / "PIPER.md").write_text("generic\n")
    (project.root / "notes.txt").write_text("ask zquux\n")
    (project.root / "blob.bin").write_bytes(b"\0zquux")
    _git(project.root, "add", ".")
    report = audit.run_audit(audit.tracked_targets(project, audit.load_rules(project)), audit.load_rules(project))
    assert [f.path for f in report.findings] == ["notes.txt"]
    assert "environments/fake.yaml" not in report.scanned and report.skipped == ("blob.bin",)


def _mixed_text(seed: int, size: int) -> str:
    # Filler, near-misses and every kind of finding, with line breaks of every kind, in random order.
    rng = random.Random(seed)
    words = ["the", "Available", "Privacy", "Christianity", "xianxia", "Grüße", "2024", "3.11", "zquux_bot"]
    hits = ["Zanzibar\n> Quuxley", "Zanzibar   Quuxley", "ZQUUX", "(qx-test-org)", "Christian", "VA's", FAKE_EMAIL,
            "user" + AT + "example.com", "+99 20 7946 0958", "(555) 010-0199", "555-010-0199", "xian"]
    parts, total = [], 0
    while total < size:
        part = (rng.choice(hits) if rng.random() < 0.05 else rng.choice(words)) + rng.choice([" ", "\n", "\r\n", "  "])
        parts.append(part)
        total += len(part)
    return "".join(parts)


def test_segments_and_worker_processes_find_what_one_pass_finds(project: Project,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (project.config_dir / "PIPER.md").write_text(_mixed_text(1, 300_000), encoding="utf-8")
    rules = audit.load_rules(project)
    monkeypatch.setattr(audit, "CHUNK_SIZE", 8192)
    monkeypatch.setattr(audit, "BATCH_BYTES", 4096)  # stream the file
    one_pass = audit.run_audit(audit.piper_md_targets(project), rules, workers=1)
    assert len(one_pass.findings) > 500
    monkeypatch.setattr(audit, "SEGMENT_BYTES", 1)  # one segment per worker
    monkeypatch.setattr(audit, "PARALLEL_BYTES", 0)
    for workers in (2, 3, 7):
        assert audit.run_audit(audit.piper_md_targets(project), rules, workers=workers) == one_pass, workers


def test_all_with_worker_processes_keeps_the_order_and_skips_what_git_tracks_but_is_no_file(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _git(project.root, "init", "-q")
    for i in range(40):
        (project.root / f"n{i:02d}.md").write_text(_mixed_text(i, 2000 * (i % 5)), encoding="utf-8")
    (project.root / "blob.bin").write_bytes(b"\0zquux")
    (project.root / "gone.md").write_text("zquux\n")
    (project.root / "link.md").symlink_to("n01.md")
    _git(project.root, "add", ".")
    (project.root / "gone.md").unlink()  # tracked, deleted, not yet staged
    rules = audit.load_rules(project)
    one = audit.run_audit(audit.tracked_targets(project, rules), rules, workers=1)
    monkeypatch.setattr(audit, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(audit, "BATCH_FILES", 3)
    assert audit.run_audit(audit.tracked_targets(project, rules), rules, workers=2) == one
    assert one.skipped == ("blob.bin",) and len(one.scanned) == 40
    assert {"gone.md", "link.md", "environments/fake.yaml", "environments/dev.yaml"}.isdisjoint(one.scanned)
    assert [f.path for f in one.findings] == sorted(f.path for f in one.findings) and len(one.findings) > 20


def test_history_finds_a_version_that_was_removed(project: Project) -> None:
    _git(project.root, "init", "-q")
    piper = project.config_dir / "PIPER.md"
    piper.write_text("owner: Zanzibar Quuxley\n")
    (project.config_dir / "PIPER.md.backup-20250101").write_text("contact zquux\n")
    _git(project.root, "add", ".")
    _git(project.root, "commit", "-q", "-m", "first")
    piper.write_text("generic\n")
    (project.config_dir / "PIPER.md.backup-20250101").unlink()
    _git(project.root, "add", "-A")
    _git(project.root, "commit", "-q", "-m", "clean")
    rules = audit.load_rules(project)
    assert audit.run_audit(audit.piper_md_targets(project), rules).clean
    report = audit.run_audit(audit.history_targets(project, rules, False), rules)
    assert sorted(f.path.split(":", 1)[1] for f in report.findings) == ["config/PIPER.md", "config/PIPER.md.backup-20250101"]
    assert all(len(f.path.split(":", 1)[0]) == 12 for f in report.findings)


def test_staged_reads_the_index_not_the_working_tree(project: Project) -> None:
    _git(project.root, "init", "-q")
    piper = project.config_dir / "PIPER.md"
    piper.write_text("by zquux\n")
    _git(project.root, "add", "config/PIPER.md")
    piper.write_text("generic\n")  # the working tree is clean, the index is not
    rules = audit.load_rules(project)
    report = audit.run_audit(audit.staged_targets(project, rules, False), rules)
    assert [(f.path, f.kind) for f in report.findings] == [(":config/PIPER.md", "username")]


def test_git_scopes_outside_a_repository_cannot_run(project: Project) -> None:
    with pytest.raises(AuditError, match="--all: git failed"):
        audit.tracked_targets(project, audit.load_rules(project))


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=t@example.invalid", *args], cwd=root,
                   check=True, capture_output=True)
