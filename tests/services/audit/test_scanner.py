"""services/audit/scanner.py: whole words, per-rule case, tricky places, detectors, chunk boundaries."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from services import audit
from services.audit import runner, scanner
from services.project import CODE_ROOT, Project
from tests.services.audit import AT, FAKE_EMAIL


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


def test_matches_across_chunk_boundaries_are_found_once(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanner, "CHUNK_SIZE", 4096)
    monkeypatch.setattr(runner, "BATCH_BYTES", 0)  # stream even a small file
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
