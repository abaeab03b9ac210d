"""services/audit/scanner.py: whole words, per-rule case, tricky places, detectors, chunk boundaries."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from services import audit
from services.audit import runner, scanner
from services.project import CODE_ROOT, Project
from tests.services.audit import AT, FAKE_EMAIL


def _scan(project: Project, text: str) -> list[audit.Finding]:
    return audit.audit_content(text.encode("utf-8"), audit.load_rules(project), "t.md")


@pytest.mark.parametrize("text", ["Available", "Privacy", "evaluate", "relevant", "Vancouver", "AVAILABLE",
                                  "christians", "Christianity", "xianxia", "xiangqi", "Christiansborg", "dragonslayer",
                                  "DRAGONSLAYER", "VA2", "Q40 bolts", "Q1", "Q44", "kind", "systems", "Veterans",
                                  "quuxleyZanzibar", "zquux_bot", "christianö", "q4_goals"])
def test_words_that_the_adr_grep_flags_but_are_not_personal_data(project: Project, text: str) -> None:
    assert _scan(project, f"The {text} word.\n") == []


@pytest.mark.parametrize("text", ["VA", "VA's", "(VA)", "xian" + AT + "x.zz", "Christian", "CHRISTIAN",
                                  "christian", "DRAGONS", "VA\u2019s", "\"VA\"", "VA.", "va", "Va", "Dragons",
                                  "dragons"])
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


def _original_terms() -> list[str]:
    # The original product's isolation test's words, read from dev.yaml so that no test file holds them.
    import yaml

    profile = yaml.safe_load((CODE_ROOT / "environments" / "dev.yaml").read_text())
    return [t["term"] for t in profile["audit"]["terms"]]


def test_dev_profile_has_the_original_products_terms_in_any_case() -> None:
    import yaml

    terms = yaml.safe_load((CODE_ROOT / "environments" / "dev.yaml").read_text())["audit"]["terms"]
    # The seven words of the original product's tests/config/test_data_isolation.py, lower-cased, by their
    # sha256 (the audit's own key) so that this file does not hold them.
    original = {"112f2dfa31205df3", "198dea392afc21d0", "21499b8293b51b61", "fec1a4bd2c61a5e7", "df59c257785d7070",
                "c314d9dc739577d5", "c61c31405b2c67de"}
    assert {hashlib.sha256(t["term"].casefold().encode()).hexdigest()[:16] for t in terms} >= original
    assert not any(t.get("case_sensitive") for t in terms)


@pytest.mark.parametrize("form", [str.upper, str.lower, str.title, lambda t: t])
def test_each_original_term_is_found_whole_word_in_any_case(project: Project, form) -> None:
    for term in _original_terms():
        text = form(term)
        findings = _scan(project, f"- The {text} initiative ({text}).\n")
        assert [f.column for f in findings] == [7, 7 + len(text) + 13], text
        assert all(f.redacted == text[0] + "*" * (len(text) - 1) for f in findings)


def test_the_va_portal_is_found(project: Project) -> None:
    assert len(_scan(project, "log in to the va portal\n")) == 1


def test_a_term_with_digits_finds_only_its_own_digits(project: Project) -> None:
    (project.environments_dir / "fake.yaml").write_text(
        "name: fake\nbranch: main\ndefault_user: {username: zquux, email: zquux@example.invalid}\n"
        "database: {name: piper_fake, port: 54399}\naudit:\n  terms:\n    - {term: R2 Unit, kind: other}\n")
    assert [f.column for f in _scan(project, "r2 unit, R7 Unit, R22 unit, R2 UNIT\n")] == [1, 29]


def test_a_profile_can_still_mark_a_term_case_sensitive(project: Project) -> None:
    (project.environments_dir / "fake.yaml").write_text(
        "name: fake\nbranch: main\ndefault_user: {username: zquux, email: zquux@example.invalid}\n"
        "database: {name: piper_fake, port: 54399}\naudit:\n  terms:\n"
        "    - {term: QXO, kind: organisation, case_sensitive: true}\n")
    assert [f.column for f in _scan(project, "QXO qxo Qxo\n")] == [1]


EXPORT = '{"format": "piper-user-export", "format_version": 1, "payload": {"user": {"username": "zquux"}}}\n'
DATA_FILE = '\ufeff\n  {"username": "zquux", "preferences": {}, "piper_personal_data": 1}\n'


@pytest.mark.parametrize("content, rule", [(EXPORT, "export-document"), (DATA_FILE, "personal-data-file")])
def test_an_export_or_personal_data_file_is_found_whatever_its_name(project: Project, content: str, rule: str) -> None:
    for name in ("notes.txt", "U.json", "README"):
        (project.root / name).write_text(content)
        report = audit.run_audit(audit.path_targets(project, [str(project.root / name)]), audit.load_rules(project))
        assert [f.rule for f in report.findings if f.kind == "document"] == [rule], name


def test_a_document_is_found_in_a_big_file_and_in_every_segment(project: Project) -> None:
    big = project.root / "big.json"
    big.write_bytes(b'{"preferences": {"notes": "' + b"x " * (9 << 20) + b'"}, "piper_personal_data": 1}\n')
    for workers in (1, 2):
        report = audit.run_audit(audit.path_targets(project, [str(big)]), audit.load_rules(project), workers=workers)
        assert [f.rule for f in report.findings] == ["personal-data-file"], workers


def test_code_and_prose_that_mention_the_format_are_not_documents(project: Project) -> None:
    python = f'"""An export looks like this::\n\n    {EXPORT}"""\nFORMAT = "piper-user-export"\n'
    markdown = f"# Exports\n\n```json\n{EXPORT}```\n"
    for name, content in (("m.py", python), ("m.md", markdown)):
        (project.root / name).write_text(content)
        report = audit.run_audit(audit.path_targets(project, [str(project.root / name)]), audit.load_rules(project))
        assert [f for f in report.findings if f.kind == "document"] == [], name
